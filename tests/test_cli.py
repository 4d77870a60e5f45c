"""The command line: `hf-tst COMMAND` and `recipes/COMMAND.py` are one script each; every flag is listed
with its help text; a command that needs a missing extra says which, before any compute."""

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_SHRUNK, load_recipe, needs_eval, run_hf_tst
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from hf_tst import TSTConfig
from hf_tst.cli import COMMANDS
from hf_tst.cli import main as hf_tst
from hf_tst.launch import with_launcher_defaults

REPO = Path(__file__).resolve().parents[1]


def help_text(*command: str) -> str:
    result = subprocess.run([sys.executable, *command, "--help"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_hf_tst_help_lists_every_command_with_its_summary():
    text = help_text("-m", "hf_tst")
    assert text.startswith("usage: hf-tst")
    for command in COMMANDS:
        summary = importlib.import_module(f"hf_tst.scripts.{command}").__doc__.split("\n")[0]
        assert f"    {command}" in text and " ".join(summary.split()[:4]) in " ".join(text.split())


def test_a_misspelt_command_is_named_with_the_closest_one_without_importing_torch():
    result = run_hf_tst("trian", "--config", "recipes/configs/tiny.yaml")
    assert (result.returncode, result.stderr) == (2, "hf-tst: error: unknown command 'trian'; did you mean train?\n")
    modules_loaded = ("import sys; from hf_tst.cli import main\ntry: main(sys.argv[1:])\nexcept SystemExit: pass\n"
                      "print(sorted({'torch', 'transformers', 'accelerate'} & set(sys.modules)))")
    for argv in (["trian"], ["--help"]):
        loaded = subprocess.run([sys.executable, "-c", modules_loaded, *argv], capture_output=True, text=True)
        assert loaded.stdout.splitlines()[-1] == "[]", argv


def test_compare_help_warns_that_its_mid_run_reading_flatters_tst_and_points_to_the_ladder():
    text = " ".join(help_text("-m", "hf_tst", "compare").split())
    assert "mid-run" in text and "flatters TST" in text and "hf-tst ladder" in text


def printed_help(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_code:
        main(argv)
    assert exit_code.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_of_a_command_has_help_and_is_listed_by_both_entry_points(command, capsys):
    parser = importlib.import_module(f"hf_tst.scripts.{command}").make_parser()
    flags = [action.option_strings[0] for action in parser._actions if action.option_strings]
    assert all(action.help for action in parser._actions), "a flag without help text"
    assert len(flags) >= 3  # --help and at least two of the command's own
    console = printed_help(hf_tst, [command, "--help"], capsys)
    assert console.startswith(f"usage: hf-tst {command}")
    for text in (console, printed_help(load_recipe(command).main, ["--help"], capsys)):
        listed = set(text.replace(",", " ").split())
        assert [flag for flag in flags if flag not in listed] == []


def test_hf_tst_train_runs_the_recipes_job_under_accelerate_launch(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = [*TINY_SHRUNK, "--max_steps", "4", "--tst_ratio", "0.5", "--eval_steps", "100"]
    hf_tst(["train", *argv, "--output_dir", str(tmp_path / "console"), "--num_processes", "1"])
    from_recipe = load_recipe("train").main([*argv, "--output_dir", str(tmp_path / "recipe")])
    from_console = json.loads((tmp_path / "console" / "eval_results.json").read_text())
    assert from_console["eval_loss"] == from_recipe["eval_loss"]


def test_flags_that_are_not_the_scripts_go_to_the_launcher(tmp_path, monkeypatch):
    launched = []
    monkeypatch.setattr("hf_tst.launch.launch_command", launched.append)
    monkeypatch.chdir(REPO)
    script_argv = [*TINY_SHRUNK, "--max_steps", "4", "--output_dir", str(tmp_path)]
    hf_tst(["train", "--num_processes", "2", *script_argv, "--accelerate_config", "ddp", "--mixed_precision", "no"])
    (args,) = launched
    assert (args.module, args.training_script, args.training_script_args) == (True, "hf_tst.scripts.train",
                                                                               script_argv)
    assert (args.num_processes, args.mixed_precision) == (2, "no")
    assert Path(args.config_file).read_text() == (REPO / "recipes" / "accelerate" / "ddp.yaml").read_text()


def refusal(argv: list[str], capsys) -> str:
    """The one line `hf-tst` prints for a mistake, having exited with status 2 and no traceback."""
    with pytest.raises(SystemExit) as exit_code:
        hf_tst(argv)
    assert exit_code.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    return line


def test_an_unknown_accelerate_config_is_refused_before_any_process_starts(monkeypatch, capsys):
    launched = []
    monkeypatch.setattr("hf_tst.launch.launch_command", launched.append)
    monkeypatch.chdir(REPO)
    line = refusal(["train", *TINY_SHRUNK, "--output_dir", "unused", "--accelerate_config", "zero9"], capsys)
    assert re.fullmatch("hf-tst train: error: --accelerate_config 'zero9' is neither a file nor .* one of ddp, fsdp, "
                        "multinode, zero2, zero3.", line)
    assert launched == []


@pytest.mark.parametrize("command, extra", [("compare", "eval"), pytest.param("compare", "plots", marks=needs_eval),
                                            ("sweep", "plots"), ("ladder", "plots")])
def test_a_command_needing_a_missing_extra_names_it_before_training(command, extra, monkeypatch, tmp_path, capsys):
    module = {"eval": "lm_eval", "plots": "matplotlib"}[extra]
    monkeypatch.setitem(sys.modules, module, None)  # what the import meets when the extra is not installed
    monkeypatch.chdir(REPO)
    trained = []
    monkeypatch.setattr(f"hf_tst.scripts.{command}.train_variant", lambda *args, **kwargs: trained.append(args))
    argv = [*TINY_SHRUNK, "--lr_scheduler_type", "warmup_stable_decay", "--output_dir", str(tmp_path)]
    line = refusal([command, *argv], capsys)
    assert re.search(rf"^hf-tst {command}: error: .*needs {module}, which is not installed.*'hf_tst\[{extra}\]'", line)
    assert trained == []


def test_lora_without_peft_is_refused_while_parsing(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    monkeypatch.chdir(REPO)
    with pytest.raises(ImportError, match=r"lora_r=8 needs peft.*pip install 'hf_tst\[peft\]'"):
        importlib.import_module("hf_tst.scripts.train").make_parser().parse_args_and_config(
            [*TINY_SHRUNK, "--lora_r", "8", "--output_dir", "unused"])


# ---- the first hour: a mistake is one line naming the fix; --help shows TST first; the launcher is quiet ----

MISTAKES = {  # the flags after `hf-tst train`, and the one line that names the mistake and its fix
    "typo": (["--config", "recipes/configs/tiny.yaml", "--tst_bag_sise", "4"],
             "unknown flag --tst_bag_sise; did you mean --tst_bag_size?"),
    "missing config": (["--config", "recipes/configs/tinyy.yaml"],
                       "--config recipes/configs/tinyy.yaml: no such file; did you mean recipes/configs/tiny.yaml?"),
    "bad ratio": (["--config", "recipes/configs/tiny.yaml", "--tst_ratio", "1.5"],
                  "tst_ratio must lie in [0, 1], got 1.5; the paper uses 0.2-0.4."),
    "malformed config": (["--config", "tests/data/not-yaml.yaml"],
                         "--config tests/data/not-yaml.yaml is not valid YAML: expected the node content, but "
                         "found '<stream end>' at line 3, column 1."),
    "no flags at all": ([], "no model: pass --model_config (to train from scratch) or --model_name_or_path, or a "
                            "--config that names one (in a clone, --config recipes/configs/tiny.yaml is the main job: "
                            "a tiny Llama on the embedded corpus, offline)."),
    "typo before any other flag": (["--tst_bag_sise", "4"],  # named before the missing model is
                                   "unknown flag --tst_bag_sise; did you mean --tst_bag_size?"),
    "launcher typo": (["--config", "recipes/configs/tiny.yaml", "--num_proceses", "2"],
                      "unknown flag --num_proceses; did you mean --num_processes?"),
    "value of the wrong type": (["--config", "recipes/configs/tiny.yaml", "--tst_bag_size", "six"],
                                "argument --tst_bag_size/--tst-bag-size: invalid int value: 'six'; `--help` lists "
                                "the flags."),
    "bad launcher value": (["--config", "recipes/configs/tiny.yaml", "--num_processes", "two"],
                           "argument --num_processes/--num-processes: invalid int value: 'two' (`accelerate launch "
                           "--help` lists the launcher's flags)."),
    "stray argument": (["--config", "recipes/configs/tiny.yaml", "tiny"],
                       "unexpected argument 'tiny'; flags take the form --field value."),
    "abbreviated flag": (["--config", "recipes/configs/tiny.yaml", "--tst_bag", "4"],
                         "unknown flag --tst_bag; did you mean --tst_bag_size?"),
    "unknown config field": (["--config", "tests/data/typo-field.yaml"],
                             "--config tests/data/typo-field.yaml: unknown field(s) tst_bagsize; did you mean "
                             "tst_bag_size?"),
    "config that is a list": (["--config", "tests/data/a-list.yaml"],
                              "--config tests/data/a-list.yaml holds a list, not a mapping of field: value pairs (one "
                              "`field: value` per line)."),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_is_one_line_naming_the_fix_before_the_launcher_starts(mistake, monkeypatch, capsys):
    launched = []
    monkeypatch.setattr("hf_tst.launch.launch_command", launched.append)
    monkeypatch.chdir(REPO)
    argv, message = MISTAKES[mistake]
    assert refusal(["train", *argv], capsys) == f"hf-tst train: error: {message}"
    assert launched == []


def test_debug_shows_the_traceback_instead(monkeypatch):
    monkeypatch.setattr("hf_tst.launch.launch_command", lambda args: pytest.fail("launched"))
    monkeypatch.setenv("HF_TST_DEBUG", "0")  # --debug sets it, for launched processes; restored after the test
    monkeypatch.chdir(REPO)
    with pytest.raises(ValueError, match="unknown flag --tst_bag_sise; did you mean --tst_bag_size?"):
        hf_tst(["train", *MISTAKES["typo"][0], "--debug"])


@pytest.mark.slow
def test_under_a_bare_accelerate_launch_a_mistake_is_the_scripts_one_line(tmp_path):
    """(`hf-tst train` and the recipe run every mistake of test_mistakes.py.) accelerate's own launcher raises
    CalledProcessError after a failed script unless --quiet; with it, the script's line is all there is."""
    accelerate = [str(Path(sys.executable).parent / "accelerate"), "launch", "--quiet", "--num_processes", "1",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "recipes/train.py"]
    argv, message = MISTAKES["typo"]
    result = subprocess.run([*accelerate, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (result.returncode, (result.stdout + result.stderr).splitlines()) == (1, [f"train.py: error: {message}"])


def test_help_shows_the_config_and_the_tst_fields_first_in_their_own_group(capsys):
    text = printed_help(hf_tst, ["train", "--help"], capsys)
    parser = importlib.import_module("hf_tst.scripts.train").make_parser()
    headings = [line for line in text.splitlines() if re.fullmatch(r"[a-zA-Z].*:", line)]
    assert headings == ["options:", "Token-Superposition Training:", "model:", "data:", "job:",
                        "training (transformers' TrainingArguments):"]
    first = text.split("Token-Superposition Training:")[1].split("\nmodel:")[0]
    listed = re.findall(r"^  (--\w+)", first, flags=re.M)
    tst_flags = [flag for action in parser._actions for flag in action.option_strings[:1] if "tst_" in flag]
    assert listed == ["--config", *tst_flags] and len(tst_flags) >= 12
    assert text.index("--config") < text.index("--tst_bag_size") < text.index("--learning_rate")


def flag_help(text: str, flag: str) -> str:
    """The lines `--help` gives `flag`, joined: from its own line to the next flag's."""
    block = re.search(rf"^  {flag}\b(.*?)(?=^  -|^\S|\Z)", text, flags=re.M | re.S).group(1)
    return " ".join(block.split())


def test_help_shows_each_fields_default_and_a_configs_value_in_its_place(monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the config's path is the checkout's (CI also runs this from outside it)
    defaults = TSTConfig(output_dir="unused")
    text = printed_help(hf_tst, ["train", "--help"], capsys)
    shown = {field: flag_help(text, f"--{field}") for field in vars(defaults) if field.startswith("tst_")}
    for field, help_ in shown.items():
        value = getattr(defaults, field)
        assert help_.endswith(f"(default: {value})") or value is None, (field, help_)
    assert flag_help(text, "--tst_ratio").endswith("(default: 0.3)") and "--no_tst_fused_lm_head" in text
    assert flag_help(text, "--no_tst_fused_lm_head").endswith(" The same as --tst_fused_lm_head false.")
    configured = printed_help(hf_tst, ["train", "--config", "recipes/configs/tiny.yaml", "--help"], capsys)
    assert flag_help(configured, "--max_steps").endswith("(default: 300)")  # tiny.yaml's; TrainingArguments' is -1
    assert flag_help(text, "--max_steps").endswith("(default: -1)")


def test_without_a_launch_config_the_launcher_gets_the_values_it_would_default_and_warns_of_none(
        tmp_path, monkeypatch, caplog):
    from accelerate.commands.launch import _validate_launch_command

    launched = []
    monkeypatch.setattr("hf_tst.launch.launch_command", launched.append)
    monkeypatch.setattr("hf_tst.launch.default_config_file", str(tmp_path / "no-accelerate-config.yaml"))
    monkeypatch.setattr("hf_tst.launch.accelerator_count", lambda: 0)
    monkeypatch.chdir(REPO)
    hf_tst(["train", *TINY_SHRUNK, "--output_dir", str(tmp_path)])
    (args,) = launched
    assert (args.num_processes, args.num_machines, args.mixed_precision, args.dynamo_backend, args.multi_gpu) == (
        1, 1, "no", "no", False)
    with caplog.at_level("WARNING", logger="accelerate.commands.launch"):
        _validate_launch_command(args)
    assert caplog.records == []


@pytest.mark.parametrize("devices, launcher_argv, filled", [
    (8, [], ["--num_processes", "8", "--multi_gpu", "--num_machines", "1", "--mixed_precision", "no",
             "--dynamo_backend", "no"]),
    (8, ["--num_processes", "2", "--mixed-precision", "bf16"],
     ["--num_processes", "2", "--mixed-precision", "bf16", "--multi_gpu", "--num_machines", "1", "--dynamo_backend",
      "no"]),  # several processes need --multi_gpu, or accelerate would silently run one
    (0, ["--num_processes=2"], ["--num_processes=2", "--multi_gpu", "--num_machines", "1", "--mixed_precision", "no",
                                "--dynamo_backend", "no"]),
    (8, ["--use_deepspeed"], ["--use_deepspeed", "--num_processes", "8", "--num_machines", "1", "--mixed_precision",
                              "no", "--dynamo_backend", "no"]),
    (8, ["--config_file", "my.yaml"], ["--config_file", "my.yaml"]),
])
def test_the_launchers_defaults_fill_only_what_no_flag_or_config_gives(devices, launcher_argv, filled, monkeypatch,
                                                                        tmp_path):
    monkeypatch.setattr("hf_tst.launch.default_config_file", str(tmp_path / "no-accelerate-config.yaml"))
    monkeypatch.setattr("hf_tst.launch.accelerator_count", lambda: devices)
    assert with_launcher_defaults(launcher_argv) == filled
    (tmp_path / "no-accelerate-config.yaml").write_text("{}")  # `accelerate config` was run: its file decides
    assert with_launcher_defaults(launcher_argv) == launcher_argv


@pytest.mark.parametrize("failure, status", [
    (subprocess.CalledProcessError(75, ["python"]), 75),  # one process: accelerate's simple launcher
    (subprocess.CalledProcessError(-9, ["python"]), 137),  # killed by SIGKILL, as a shell reports it
    (ChildFailedError("hf_tst.scripts.train", {1: ProcessFailure(1, 1, 75, "/none"),
                                              0: ProcessFailure(0, 2, 2, "/none")}), 75),  # torch.distributed
])
def test_a_launched_job_that_fails_exits_with_its_own_status_and_no_launcher_traceback(failure, status, monkeypatch,
                                                                                        capsys):
    def launch_command(args):
        raise failure

    monkeypatch.setattr("hf_tst.launch.launch_command", launch_command)
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_code:
        hf_tst(["train", *TINY_SHRUNK, "--output_dir", "unused", "--num_processes", "1"])
    assert exit_code.value.code == status
    assert capsys.readouterr().err == ""  # the launched processes said why


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_a_command_that_succeeds_exits_0_from_the_console_script(command):
    """The console script runs `sys.exit(main())`: a command's result returned through main (a dict of metrics)
    would print and exit 1. The command itself is replaced by one that succeeds with a result."""
    console_script = (f"import sys, hf_tst.scripts.{command} as script; script.main = lambda argv, prog: {{'ok': 1}}; "
                      "from hf_tst.cli import main; sys.exit(main())")
    result = subprocess.run([sys.executable, "-c", console_script, command], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


def test_push_refuses_a_folder_that_does_not_exist_before_touching_the_hub(monkeypatch, capsys):
    monkeypatch.setattr("hf_tst.scripts.push.push_output_dir", lambda *args: pytest.fail("pushed"))
    assert refusal(["push", "no-such-run", "user/model"], capsys) == ("hf-tst push: error: output_dir no-such-run: no "
                                                                     "such folder; pass the output_dir of a training "
                                                                     "run.")

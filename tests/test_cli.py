"""The command line: `hf-tst COMMAND` and `recipes/COMMAND.py` are one script each; every flag is listed
with its help text; a command that needs a missing extra says which, before any compute."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_SHRUNK, load_recipe, needs_eval

from hf_tst.cli import COMMANDS
from hf_tst.cli import main as hf_tst

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
    monkeypatch.setattr("hf_tst.cli.launch_command", launched.append)
    monkeypatch.chdir(REPO)
    script_argv = [*TINY_SHRUNK, "--max_steps", "4", "--output_dir", str(tmp_path)]
    hf_tst(["train", "--num_processes", "2", *script_argv, "--accelerate_config", "ddp", "--mixed_precision", "no"])
    (args,) = launched
    assert (args.module, args.training_script, args.training_script_args) == (True, "hf_tst.scripts.train",
                                                                               script_argv)
    assert (args.num_processes, args.mixed_precision) == (2, "no")
    assert Path(args.config_file).read_text() == (REPO / "recipes" / "accelerate" / "ddp.yaml").read_text()


def test_an_unknown_accelerate_config_is_refused_before_any_process_starts(monkeypatch):
    launched = []
    monkeypatch.setattr("hf_tst.cli.launch_command", launched.append)
    monkeypatch.chdir(REPO)
    with pytest.raises(ValueError, match="'zero9' is neither a file nor .* one of ddp, fsdp, multinode, zero2, zero3"):
        hf_tst(["train", *TINY_SHRUNK, "--output_dir", "unused", "--accelerate_config", "zero9"])
    assert launched == []


@pytest.mark.parametrize("command, extra", [("compare", "eval"), pytest.param("compare", "plots", marks=needs_eval),
                                            ("sweep", "plots"), ("ladder", "plots")])
def test_a_command_needing_a_missing_extra_names_it_before_training(command, extra, monkeypatch, tmp_path):
    module = {"eval": "lm_eval", "plots": "matplotlib"}[extra]
    monkeypatch.setitem(sys.modules, module, None)  # what the import meets when the extra is not installed
    monkeypatch.chdir(REPO)
    trained = []
    monkeypatch.setattr(f"hf_tst.scripts.{command}.train_variant", lambda *args, **kwargs: trained.append(args))
    argv = [*TINY_SHRUNK, "--lr_scheduler_type", "warmup_stable_decay", "--output_dir", str(tmp_path)]
    with pytest.raises(ImportError, match=rf"needs {module}, which is not installed.*'hf_tst\[{extra}\]'"):
        hf_tst([command, *argv])
    assert trained == []


def test_lora_without_peft_is_refused_while_parsing(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    monkeypatch.chdir(REPO)
    with pytest.raises(ImportError, match=r"lora_r=8 needs peft.*pip install 'hf_tst\[peft\]'"):
        importlib.import_module("hf_tst.scripts.train").make_parser().parse_args_and_config(
            [*TINY_SHRUNK, "--lora_r", "8", "--output_dir", "unused"])

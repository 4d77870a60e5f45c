"""`hf-tst`: the console command in front of the scripts of `hf_tst.scripts`, as `trl sft` is in front of TRL's.

    hf-tst train --config recipes/configs/tiny.yaml                 # = accelerate launch recipes/train.py --config ...
    hf-tst train --config my.yaml --accelerate_config zero3 --num_processes 8
    hf-tst compare --config recipes/configs/tiny.yaml --compare_dir outputs/compare
    hf-tst COMMAND --help                                           # every flag of COMMAND, with its help

`hf-tst train` runs under `accelerate launch`: the flags that are not the script's go to the launcher
(`--num_processes 8`, `--mixed_precision bf16`, ...), and `--accelerate_config` takes a path or the
name of a launch config shipped with hf_tst (ddp, zero2, zero3, fsdp, multinode). With no launch
config (neither that flag, `--config_file`, nor the file `accelerate config` writes), the launcher
settings it would default are passed as accelerate defaults them: a process per GPU (one on a machine
without), one machine, no mixed precision, no dynamo; several processes asked for with `--num_processes`
or `--num_machines` alone get `--multi_gpu` (data parallel, as the `ddp` config), which accelerate would
otherwise drop silently, running one. The other commands run in this process.

Preemption: the signals of `--tst_save_on_signal` (SIGTERM, SIGUSR1) never stop the launcher; it passes
them on to the trainers, waits while they save, and exits with their status 75 (`hf_tst.preemption`).

Errors come in two shapes (`hf_tst.errors`). A mistake the user can fix (an unknown flag, a bad value, a
missing config file, a bad data file, a missing extra) prints one line, `hf-tst COMMAND: error: ...`, and
exits with status 2, before any process is launched when the flags are at fault; `--debug` shows its
traceback instead (the interpreter's status 1). A runtime failure (a full disk, a library's bug) prints one
line with the cause and the optimizer step, then its traceback, and exits with status 1.
"""

import argparse
import importlib
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from accelerate.commands.config.config_args import default_config_file
from accelerate.commands.launch import launch_command, launch_command_parser
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from .config import accelerator_count
from .errors import UsageError, failure_line, usage_line
from .parser import flags_of
from .preemption import signals_left_to_trainers

COMMANDS = ("train", "plan", "evaluate", "compare", "sweep", "ladder", "push")
LAUNCHED = ("train",)  # run under `accelerate launch`, on every device
ACCELERATE_CONFIGS = resources.files("hf_tst") / "resources" / "accelerate"
USAGE_ERROR = 2  # argparse's exit status for a command-line mistake
RUNTIME_FAILURE = 1
DEBUG = "HF_TST_DEBUG"  # set by --debug, so that launched processes show their tracebacks too
LAUNCHER_DEFAULTS = {"--num_machines": "1", "--mixed_precision": "no", "--dynamo_backend": "no"}


def summary(command: str) -> str:
    """The first line of a command's docstring, for `hf-tst --help`."""
    return importlib.import_module(f"hf_tst.scripts.{command}").__doc__.strip().splitlines()[0]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-tst", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:  # each command parses its own flags (add_help=False leaves --help to it)
        commands.add_parser(command, help=summary(command), add_help=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    """`hf-tst COMMAND ...`: the command's script, through `run`. Returns nothing: the console script exits with
    what `main()` returns, so a command's result (its files hold it) would read as a failure."""
    argv = sys.argv[1:] if argv is None else argv
    command, rest = make_parser().parse_known_args(argv)
    prog = f"hf-tst {command.command}"
    if command.command in LAUNCHED:
        run(lambda script_argv, prog: launch(command.command, script_argv), rest, prog)
    else:
        run(importlib.import_module(f"hf_tst.scripts.{command.command}").main, rest, prog)


def run(main: Callable, argv: list[str] | None = None, prog: str | None = None):
    """`main(argv, prog=prog)` as a program: a `UsageError` prints `prog: error: message` on one line and exits
    with status 2; a launched job that failed (having printed its own message) exits with its status; any other
    exception, a runtime failure, prints `errors.failure_line` and its traceback and exits with status 1. A bare
    `--debug` in `argv` (or `HF_TST_DEBUG=1`) lets the usage errors' tracebacks through, in launched processes
    too."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0])
    if "--debug" in argv and not takes_value(argv, "--debug"):  # TrainingArguments' `--debug OPTION` is not ours
        argv.remove("--debug")
        os.environ[DEBUG] = "1"
    debug = os.environ.get(DEBUG) == "1"
    try:
        return main(argv, prog=prog)
    except (subprocess.CalledProcessError, ChildFailedError) as error:
        if debug:
            raise
        sys.exit(launched_status(error))
    except UsageError as error:
        if debug:
            raise
        print(usage_line(prog, error), file=sys.stderr)
        sys.exit(USAGE_ERROR)
    except Exception as error:  # noqa: BLE001 - every other failure is shown whole, then the status says it failed
        print(failure_line(prog, error), file=sys.stderr, flush=True)
        traceback.print_exc()
        sys.exit(RUNTIME_FAILURE)


def launched_status(error: subprocess.CalledProcessError | ChildFailedError) -> int:
    """The status of a launched job that failed (its first process to fail, under torch.distributed), as a
    shell reports it: 75 for a run that saved on a signal and asks to be requeued, 128 + N for signal N."""
    code = (error.returncode if isinstance(error, subprocess.CalledProcessError)
            else error.get_first_failure()[1].exitcode)
    return code if code > 0 else 128 - code if code < 0 else 1


def takes_value(argv: list[str], flag: str) -> bool:
    """Whether `flag` in `argv` is followed by a value rather than by another flag or nothing."""
    at = argv.index(flag)
    return at + 1 < len(argv) and not argv[at + 1].startswith("-")


def launch(command: str, argv: list[str]) -> None:
    """Run `hf_tst.scripts.<command>` under `accelerate launch`. The script's parser reads `argv` first
    (so `--help`, bad values and unknown flags stop here, before any process starts); the strings it does
    not know must be the launcher's flags and their values."""
    parser = importlib.import_module(f"hf_tst.scripts.{command}").make_parser(prog=f"hf-tst {command}")
    launcher = launch_command_parser()
    launcher.error = launcher_error
    *configs, launcher_argv = parser.parse_args_and_config(argv, return_remaining_strings=True,
                                                           other_flags=[*flags_of(launcher), "--accelerate_config"])
    script_argv = without_subsequence(argv, launcher_argv)
    module = f"hf_tst.scripts.{command}"
    launch_args = launcher.parse_args([*with_launcher_defaults(resolve_accelerate_config(launcher_argv)), "--module",
                                       module, *script_argv])
    if launch_args.training_script != module:  # a string that is neither a flag nor a flag's value
        raise UsageError(f"unexpected argument {launch_args.training_script!r}; flags take the form --field value.")
    preemption_signals = next((c.tst_save_on_signal for c in configs if hasattr(c, "tst_save_on_signal")), [])
    with signals_left_to_trainers(preemption_signals):  # the trainers save, however long it takes, and exit 75
        launch_command(launch_args)


def launcher_error(message: str):
    """A bad launcher value as one line, instead of accelerate's usage of every flag and an exit."""
    raise UsageError(f"{message} (`accelerate launch --help` lists the launcher's flags).")


def without_subsequence(items: list[str], subsequence: list[str]) -> list[str]:
    """`items` less the ordered `subsequence` of them."""
    rest, pending = [], iter(subsequence)
    next_out = next(pending, None)
    for item in items:
        if item == next_out:
            next_out = next(pending, None)
        else:
            rest.append(item)
    return rest


def resolve_accelerate_config(launcher_argv: list[str]) -> list[str]:
    """`--accelerate_config PATH|NAME` as accelerate's `--config_file`: a file, or a launch config shipped
    with hf_tst (`resources/accelerate/NAME.yaml`)."""
    launcher_argv = [part for item in launcher_argv
                     for part in (item.split("=", 1) if item.startswith("--accelerate_config=") else [item])]
    if "--accelerate_config" not in launcher_argv:
        return launcher_argv
    at = launcher_argv.index("--accelerate_config")
    name = launcher_argv[at + 1] if at + 1 < len(launcher_argv) else ""
    shipped = ACCELERATE_CONFIGS / f"{name}.yaml"
    if name and Path(name).is_file():
        path = name
    elif name and shipped.is_file():
        path = str(shipped)
    else:
        raise UsageError(f"--accelerate_config {name!r} is neither a file nor a launch config shipped with hf_tst; "
                         f"pass a path or one of {', '.join(shipped_accelerate_configs())}.")
    return ["--config_file", path, *launcher_argv[:at], *launcher_argv[at + 2:]]


def with_launcher_defaults(launcher_argv: list[str]) -> list[str]:
    """`launcher_argv` plus the settings `accelerate launch` would default, each with a warning, when no launch
    config gives them (`--config_file`, or the file `accelerate config` writes): the values it would use, a
    process per local GPU (one without), one machine, no mixed precision, no dynamo; and `--multi_gpu` whenever
    that makes several processes (accelerate would run one, silently)."""
    given = {"--" + item[2:].split("=", 1)[0].replace("-", "_") for item in launcher_argv if item.startswith("--")}
    if "--config_file" in given or os.path.isfile(default_config_file):
        return launcher_argv
    filled = [*launcher_argv]
    processes = launcher_value(launcher_argv, "--num_processes") or max(accelerator_count(), 1)
    machines = launcher_value(launcher_argv, "--num_machines") or 1
    if "--num_processes" not in given:
        filled += ["--num_processes", str(processes)]
    if (processes > 1 or machines > 1) and not given & {"--multi_gpu", "--cpu", "--use_deepspeed", "--use_fsdp",
                                                         "--tpu", "--use_megatron_lm"}:
        filled.append("--multi_gpu")
    return filled + [item for flag, value in LAUNCHER_DEFAULTS.items() if flag not in given for item in (flag, value)]


def launcher_value(launcher_argv: list[str], flag: str) -> int | None:
    """The integer value of launcher flag `flag` (`--flag N` or `--flag=N`) in `launcher_argv`, or None."""
    for at, item in enumerate(launcher_argv):
        if item.startswith(flag + "="):
            value = item.split("=", 1)[1]
        elif item == flag and at + 1 < len(launcher_argv):
            value = launcher_argv[at + 1]
        else:
            continue
        return int(value) if value.isdigit() else None  # accelerate's parser names a bad value
    return None


def shipped_accelerate_configs() -> list[str]:
    """The names `--accelerate_config` takes."""
    return sorted(entry.name.removesuffix(".yaml") for entry in ACCELERATE_CONFIGS.iterdir())

"""`hf-tst`: the console command in front of the scripts of `hf_tst.scripts`, as `trl sft` is in front of TRL's.

    hf-tst train --config recipes/configs/tiny.yaml                 # = accelerate launch recipes/train.py --config ...
    hf-tst train --config my.yaml --accelerate_config zero3 --num_processes 8
    hf-tst compare --config recipes/configs/tiny.yaml --compare_dir outputs/compare
    hf-tst COMMAND --help                                           # every flag of COMMAND, with its help

`hf-tst train` runs under `accelerate launch` (`hf_tst.launch`: the launcher's flags, its defaults, and
preemption signals passed on to the trainers); the other commands run in this process. `hf-tst --help`
and a misspelt command answer without importing torch: the commands' modules load when one runs.

Errors come in two shapes (`hf_tst.errors`). A mistake the user can fix (an unknown flag, a bad value, a
missing config file, a bad data file, a missing extra) prints one line, `hf-tst COMMAND: error: ...`, and
exits with status 2, before any process is launched when the flags are at fault; `--debug` shows its
traceback instead (the interpreter's status 1). A runtime failure (a full disk, a library's bug) prints one
line with the cause and the optimizer step, then its traceback, and exits with status 1.
"""

import argparse
import ast
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from .errors import LaunchedJobFailed, UsageError, did_you_mean, failure_line, usage_line

COMMANDS = ("train", "plan", "evaluate", "compare", "sweep", "ladder", "push")
LAUNCHED = ("train",)  # run under `accelerate launch`, on every device
USAGE_ERROR = 2  # argparse's exit status for a command-line mistake
RUNTIME_FAILURE = 1
DEBUG = "HF_TST_DEBUG"  # set by --debug, so that launched processes show their tracebacks too


def summary(command: str) -> str:
    """The first line of a command's docstring, for `hf-tst --help`, read from its source (importing the module
    would import torch)."""
    source = Path(importlib.util.find_spec(f"hf_tst.scripts.{command}").origin).read_text()
    return ast.get_docstring(ast.parse(source)).splitlines()[0]


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
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        print(f"hf-tst: error: unknown command {argv[0]!r}"
              f"{did_you_mean(argv[0], COMMANDS) or '; `hf-tst --help` lists the commands.'}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    command, rest = make_parser().parse_known_args(argv)
    prog = f"hf-tst {command.command}"
    if command.command in LAUNCHED:
        from .launch import launch
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
    except LaunchedJobFailed as error:
        if debug:
            raise
        sys.exit(error.status)
    except UsageError as error:
        if debug:
            raise
        print(usage_line(prog, error), file=sys.stderr)
        sys.exit(USAGE_ERROR)
    except Exception as error:  # noqa: BLE001 - every other failure is shown whole, then the status says it failed
        print(failure_line(prog, error), file=sys.stderr, flush=True)
        traceback.print_exc()
        sys.exit(RUNTIME_FAILURE)


def takes_value(argv: list[str], flag: str) -> bool:
    """Whether `flag` in `argv` is followed by a value rather than by another flag or nothing."""
    at = argv.index(flag)
    return at + 1 < len(argv) and not argv[at + 1].startswith("-")

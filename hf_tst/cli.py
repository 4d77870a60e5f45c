"""`hf-tst`: the console command in front of the scripts of `hf_tst.scripts`, as `trl sft` is in front of TRL's.

    hf-tst train --config recipes/configs/tiny.yaml                 # = accelerate launch recipes/train.py --config ...
    hf-tst train --config my.yaml --accelerate_config zero3 --num_processes 8
    hf-tst compare --config recipes/configs/tiny.yaml --compare_dir outputs/compare
    hf-tst COMMAND --help                                           # every flag of COMMAND, with its help

`hf-tst train` runs under `accelerate launch`: the flags that are not the script's go to the launcher
(`--num_processes 8`, `--mixed_precision bf16`, ...), and `--accelerate_config` takes a path or the
name of a launch config shipped with hf_tst (ddp, zero2, zero3, fsdp, multinode). The other commands
run in this process.
"""

import argparse
import importlib
import sys
from importlib import resources
from pathlib import Path

from accelerate.commands.launch import launch_command, launch_command_parser

COMMANDS = ("train", "evaluate", "compare", "sweep", "ladder", "push")
LAUNCHED = ("train",)  # run under `accelerate launch`, on every device
ACCELERATE_CONFIGS = resources.files("hf_tst") / "resources" / "accelerate"


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


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    command, rest = make_parser().parse_known_args(argv)
    if command.command in LAUNCHED:
        return launch(command.command, rest)
    script = importlib.import_module(f"hf_tst.scripts.{command.command}")
    return script.main(rest, prog=f"hf-tst {command.command}")


def launch(command: str, argv: list[str]) -> None:
    """Run `hf_tst.scripts.<command>` under `accelerate launch`. The script's parser reads `argv` first
    (so `--help` and bad values stop here, before any process starts); the strings it does not know are
    the launcher's."""
    parser = importlib.import_module(f"hf_tst.scripts.{command}").make_parser(prog=f"hf-tst {command}")
    *_, launcher_argv = parser.parse_args_and_config(argv, return_remaining_strings=True)
    script_argv = without_subsequence(argv, launcher_argv)
    launcher_argv = resolve_accelerate_config(launcher_argv)
    launch_command(launch_command_parser().parse_args(
        [*launcher_argv, "--module", f"hf_tst.scripts.{command}", *script_argv]))


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
        raise ValueError(f"--accelerate_config {name!r} is neither a file nor a launch config shipped with hf_tst; "
                         f"pass a path or one of {', '.join(shipped_accelerate_configs())}.")
    return ["--config_file", path, *launcher_argv[:at], *launcher_argv[at + 2:]]


def shipped_accelerate_configs() -> list[str]:
    """The names `--accelerate_config` takes."""
    return sorted(entry.name.removesuffix(".yaml") for entry in ACCELERATE_CONFIGS.iterdir())

"""`hf-tst`: the console command in front of the scripts of `hf_tst.scripts`, as `trl sft` is in front of TRL's.

    hf-tst train --config recipes/configs/tiny.yaml     # = accelerate launch recipes/train.py --config ...
    hf-tst compare --config recipes/configs/tiny.yaml --compare_dir outputs/compare
    hf-tst COMMAND --help                               # every flag of COMMAND, with its help

A command runs in this process; `accelerate launch -m hf_tst train ...` runs it on every device.
"""

import argparse
import importlib
import sys

COMMANDS = ("train", "evaluate", "compare", "sweep", "ladder", "push")


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
    script = importlib.import_module(f"hf_tst.scripts.{command.command}")
    return script.main(rest, prog=f"hf-tst {command.command}")

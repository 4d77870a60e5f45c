"""`TSTParser`: dataclass arguments from `--config x.yaml` plus command-line overrides, for the
`hf-tst` commands, the recipes and users' own scripts (TRL's `TrlParser`, for hf_tst).

Every mistake it meets is a `UsageError` whose one line names the flag or file and the fix, raised before
anything is built: an unknown flag with the closest known one, a value of the wrong type, a config file that
is missing, is not YAML, names no field or inherits from itself (a `base:` cycle), and a value that the
argument classes refuse (hf_tst's, or transformers' `TrainingArguments` checking its own)."""

import argparse
import dataclasses
import os
import re
import sys
import traceback
from collections.abc import Iterable

import yaml
from transformers import HfArgumentParser

from .errors import UsageError, did_you_mean

CONFIG_HELP = ("YAML file of defaults for any of these fields (a `base: other.yaml` key inherits that file's "
               "values); flags on the command line override it.")
FIRST_GROUP = ("Token-Superposition Training", "The config file and the TST fields; the other fields follow.")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """`--help` with the description as written and every field's default that is set after its help (the config
    file's value when `--config` is given: its values are the parser's defaults by the time `--help` is read)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        # `--no_field` has its field's default, shown there; a default of None means "unset", which the help says.
        if isinstance(action, argparse._StoreFalseAction) or action.default is None:
            return action.help
        return super()._get_help_string(action)


class TSTParser(HfArgumentParser):
    """An `HfArgumentParser` over `dataclass_types` that also takes `--config FILE.yaml`.

    Every key of the YAML file must be a field of one of the dataclasses, so that a typo fails
    loudly instead of being ignored. A `base: other.yaml` key (relative to the file) inherits that
    file's values, which the file's own then override: a baseline twin is its TST config plus
    `tst_ratio: 0`. Flags are never abbreviated (`--tst_bag` is unknown, not `--tst_bag_size`).
    `--help` shows `--config` and the `tst_*` fields first, in a group of their own, then one group
    per dataclass that names one (`_argument_group_name`), each field with its default.
    """

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("usage", "%(prog)s [-h] [--config FILE.yaml] [--FIELD VALUE ...]")
        super().__init__(dataclass_types, **kwargs)
        first = self.add_argument_group(*FIRST_GROUP)
        # Read by parse_args_and_config before the dataclasses see the rest; listed here for --help.
        first.add_argument("--config", metavar="FILE.yaml", default=argparse.SUPPRESS, help=CONFIG_HELP)
        move_to_group(self, first, lambda action: action.dest.startswith("tst_"))
        for action in self._actions:  # `--no_field` repeated its field's whole help
            if isinstance(action, argparse._StoreFalseAction):
                action.help = f"The same as --{action.dest} false."

    def error(self, message: str):
        """argparse's errors (a bad value, a missing one) as a `UsageError`, instead of the usage of every
        flag and an exit."""
        raise UsageError(f"{message}; `--help` lists the flags.")

    def parse_args_and_config(self, argv: list[str] | None = None, return_remaining_strings: bool = False,
                              other_flags: list[str] = ()) -> tuple:
        """One instance per dataclass, in order: the config file's values, overridden by `argv`'s flags;
        then, with `return_remaining_strings`, the list of `argv`'s strings that are no field's, which may
        be `other_flags` and their values (another program's, such as a launcher's). A flag that is neither
        is refused before any dataclass is built, naming the closest known one."""
        pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        pre.add_argument("--config")
        known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
        if known.config:
            defaults = load_yaml_config(known.config)
            fields = [field.name for cls in self.dataclass_types for field in dataclasses.fields(cls)]
            unknown = sorted(set(defaults) - set(fields))
            if unknown:
                raise UsageError(f"--config {known.config}: unknown field(s) {', '.join(unknown)}"
                                 f"{did_you_mean(unknown[0], fields) or '; `--help` lists the fields.'}")
            self.set_defaults(**defaults)
        _, leftover = self.parse_known_args(rest)
        check_flags(leftover, [*flags_of(self), *other_flags])
        if leftover and not return_remaining_strings:
            raise UsageError(f"unexpected argument(s) {' '.join(leftover)}; flags take the form --field value.")
        try:
            return self.parse_args_into_dataclasses(args=rest, return_remaining_strings=return_remaining_strings)
        except ValueError as error:
            if isinstance(error, UsageError) or not refused_by_training_arguments(error):
                raise
            raise UsageError(str(error)) from error


def refused_by_training_arguments(error: BaseException) -> bool:
    """Whether transformers' `TrainingArguments` raised `error` itself, checking a value (a usage mistake), rather
    than something it called on the way (setting up the device or the process group: a runtime failure)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.endswith(os.path.join("transformers", "training_args.py"))


def move_to_group(parser: argparse.ArgumentParser, group, belongs) -> None:
    """Show the actions for which `belongs(action)` holds in `group`, and `group` first after the usage
    and `-h`. argparse has no public way to regroup arguments that `HfArgumentParser` already added; this
    changes only how `--help` lists them."""
    for other in parser._action_groups:
        if other is not group:
            moved = [action for action in other._group_actions if belongs(action)]
            other._group_actions[:] = [action for action in other._group_actions if action not in moved]
            group._group_actions.extend(moved)
    parser._action_groups.remove(group)
    parser._action_groups.insert(2, group)  # after argparse's positionals and options (-h)


def flags_of(parser: argparse.ArgumentParser) -> list[str]:
    """The option strings of `parser` (`--field`, `--no_field`, `-h`, ...)."""
    return [option for action in parser._actions for option in action.option_strings]


def is_flag(string: str) -> bool:
    return re.match(r"--?[A-Za-z]", string) is not None


def check_flags(strings: Iterable[str], known: list[str]) -> None:
    """Refuse the first of `strings` that looks like a flag (`--name` or `--name=value`) and is not in
    `known`, naming the closest known flag."""
    for string in strings:
        name = string.split("=", 1)[0]
        if is_flag(name) and name not in known:
            raise UsageError(f"unknown flag {name}{did_you_mean(name, known) or '; `--help` lists the flags.'}")


def load_yaml_config(path: str, chain: tuple[str, ...] = ()) -> dict:
    """The values of a YAML config, following its `base:` chain (`chain`: the files that led here); a missing file,
    one that is not YAML or not a mapping of field: value, and a chain that comes back to a file are refused,
    naming the files."""
    if os.path.realpath(path) in map(os.path.realpath, chain):
        raise UsageError(f"--config {chain[0]}: its base: chain comes back to {path} "
                         f"({' -> '.join([*chain, path])}); remove the base: key that closes the loop.")
    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except FileNotFoundError:
        folder = os.path.dirname(path) or "."
        siblings = [os.path.join(os.path.dirname(path), name) for name in sorted(os.listdir(folder))
                    if name.endswith((".yaml", ".yml"))] if os.path.isdir(folder) else []
        raise UsageError(f"--config {path}: no such file" + (did_you_mean(path, siblings) or
                         "; pass the path of a YAML config, such as recipes/configs/tiny.yaml.")) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UsageError(f"--config {path} is not valid YAML: {problem}{where}.") from None
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise UsageError(f"--config {path} holds a {type(values).__name__}, not a mapping of field: value pairs "
                         "(one `field: value` per line).")
    base = values.pop("base", None)
    if base is None:
        return values
    return {**load_yaml_config(os.path.join(os.path.dirname(path), base), (*chain, path)), **values}

"""`TSTParser`: dataclass arguments from `--config x.yaml` plus command-line overrides, for the
`hf-tst` commands, the recipes and users' own scripts (TRL's `TrlParser`, for hf_tst)."""

import argparse
import dataclasses
import os
import sys

import yaml
from transformers import HfArgumentParser

CONFIG_HELP = ("YAML file of defaults for any of these fields (a `base: other.yaml` key inherits that file's "
               "values); flags on the command line override it.")


class TSTParser(HfArgumentParser):
    """An `HfArgumentParser` over `dataclass_types` that also takes `--config FILE.yaml`.

    Every key of the YAML file must be a field of one of the dataclasses, so that a typo fails
    loudly instead of being ignored. A `base: other.yaml` key (relative to the file) inherits that
    file's values, which the file's own then override: a baseline twin is its TST config plus
    `tst_ratio: 0`.
    """

    def __init__(self, dataclass_types, **kwargs):
        super().__init__(dataclass_types, **kwargs)
        # Listed for --help only: parse_args_and_config reads it first, so the dataclasses never see it.
        self.add_argument("--config", metavar="FILE.yaml", default=argparse.SUPPRESS, help=CONFIG_HELP)

    def parse_args_and_config(self, argv: list[str] | None = None, return_remaining_strings: bool = False) -> tuple:
        """One instance per dataclass, in order: the config file's values, overridden by `argv`'s flags;
        then, with `return_remaining_strings`, the list of `argv`'s strings that are no field's (else they
        are an error)."""
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config")
        known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
        if known.config:
            defaults = load_yaml_config(known.config)
            fields = {field.name for cls in self.dataclass_types for field in dataclasses.fields(cls)}
            unknown = sorted(set(defaults) - fields)
            if unknown:
                raise ValueError(f"{known.config}: unknown field(s) {', '.join(unknown)}; `--help` lists the fields.")
            self.set_defaults(**defaults)
        return self.parse_args_into_dataclasses(args=rest, return_remaining_strings=return_remaining_strings)


def load_yaml_config(path: str) -> dict:
    """The values of a YAML config, following its `base:` chain."""
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    base = values.pop("base", None)
    if base is None:
        return values
    return {**load_yaml_config(os.path.join(os.path.dirname(path), base)), **values}

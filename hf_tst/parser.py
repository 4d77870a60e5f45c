"""`--config x.yaml` plus command-line overrides, for the recipes and for users' own scripts."""

import argparse
import dataclasses
import os
import sys

import yaml
from transformers import HfArgumentParser


def parse_config(dataclass_types: tuple, argv: list[str] | None = None) -> tuple:
    """Parse `dataclass_types` from an optional `--config` YAML file, overridden by any `--field value`.

    Every key of the YAML file must be a field of one of the dataclasses, so that a typo fails
    loudly instead of being ignored. A `base: other.yaml` key (relative to the file) inherits that
    file's values, which the file's own then override: a baseline twin is its TST config plus
    `tst_ratio: 0`.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types, epilog="--config FILE.yaml sets defaults for any of these fields.")
    if known.config:
        defaults = load_yaml_config(known.config)
        fields = {field.name for cls in dataclass_types for field in dataclasses.fields(cls)}
        unknown = sorted(set(defaults) - fields)
        if unknown:
            raise ValueError(f"{known.config}: unknown field(s) {', '.join(unknown)}; `--help` lists the fields.")
        parser.set_defaults(**defaults)
    return parser.parse_args_into_dataclasses(args=rest)


def load_yaml_config(path: str) -> dict:
    """The values of a YAML config, following its `base:` chain."""
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    base = values.pop("base", None)
    if base is None:
        return values
    return {**load_yaml_config(os.path.join(os.path.dirname(path), base)), **values}

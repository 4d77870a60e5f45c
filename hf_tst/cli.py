"""`--config x.yaml` plus command-line overrides, for the recipes and for users' own scripts."""

import argparse
import dataclasses
import sys

import yaml
from transformers import HfArgumentParser


def parse_config(dataclass_types: tuple, argv: list[str] | None = None) -> tuple:
    """Parse `dataclass_types` from an optional `--config` YAML file, overridden by any `--field value`.

    Every key of the YAML file must be a field of one of the dataclasses, so that a typo fails
    loudly instead of being ignored.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types, epilog="--config FILE.yaml sets defaults for any of these fields.")
    if known.config:
        with open(known.config) as f:
            defaults = yaml.safe_load(f) or {}
        fields = {field.name for cls in dataclass_types for field in dataclasses.fields(cls)}
        unknown = sorted(set(defaults) - fields)
        if unknown:
            raise ValueError(f"{known.config}: unknown field(s) {', '.join(unknown)}; `--help` lists the fields.")
        parser.set_defaults(**defaults)
    return parser.parse_args_into_dataclasses(args=rest)

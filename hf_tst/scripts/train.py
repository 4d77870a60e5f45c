"""Pre-train a causal LM with Token-Superposition Training.

    accelerate launch recipes/train.py --config recipes/configs/tiny.yaml [--any_field value ...]
    hf-tst train --config recipes/configs/tiny.yaml [--any_field value ...] [--accelerate_config zero3 ...]

Every run names a model and data: in a clone, `--config recipes/configs/tiny.yaml`, the main job, trains offline a tiny
Llama built from `recipes/models/tiny-llama` on the shipped tokenizer and the embedded Python-docs corpus.
Online: `--model_name_or_path` / `--model_config` / `--tokenizer_name` take Hub ids, `--dataset_name` a Hub
dataset (add `--streaming true` to stream it).
`--resume_from_checkpoint last` resumes from the newest whole checkpoint in `--output_dir` (`auto`: that one,
or a fresh start when there is none).
Under `hf-tst train`, flags that are none of these go to `accelerate launch` (`--num_processes`,
`--mixed_precision`, `--config_file`; `accelerate launch --help` lists them). A mistake in the input is one
line and status 2 (`--debug` adds its traceback); a failure while training is a line with its step, the
traceback and status 1.
"""

from accelerate import PartialState

from ..arguments import TRAINING_ARGUMENTS
from ..cli import run
from ..parser import TSTParser
from ..pretraining import pretrain


def make_parser(prog: str | None = None) -> TSTParser:
    return TSTParser(TRAINING_ARGUMENTS, prog=prog, description=__doc__)


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    metrics = pretrain(*make_parser(prog).parse_args_and_config(argv))
    # A launched process that exits with its process group alive can abort in the group's teardown
    # ("terminate called without an active exception"), failing a run that succeeded.
    PartialState().destroy_process_group()
    return metrics


if __name__ == "__main__":  # the process `hf-tst train` starts under `accelerate launch`
    run(main, prog="hf-tst train")

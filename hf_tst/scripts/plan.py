"""Plan a TST run before any compute: parameters, tokens per step, data and GPU-hours beside its baseline twin.

    hf-tst plan --config recipes/configs/paper/smollm2-270m-tst.yaml --num_processes 8 [--dataset_tokens 1e12]

Takes the training config (and any training flag) plus the flags below; builds the model on the meta device, so
nothing is downloaded but the model's config. The vocabulary is the model config's.
"""

import sys
from dataclasses import dataclass, field

from ..arguments import TRAINING_ARGUMENTS
from ..cli import run
from ..parser import TSTParser
from ..plan import model_on_meta, report


@dataclass
class PlanArguments:
    _argument_group_name = "plan"

    num_processes: int = field(default=1, metadata={"help": "Data-parallel processes (GPUs) the run will use."})
    dataset_tokens: float | None = field(
        default=None, metadata={"help": "Tokens in the training corpus, for the epochs each run reads."})
    mfu: float = field(default=0.4, metadata={"help": "Model FLOPs utilisation to expect, for the GPU-hours."})
    gpu: str = field(default="H100", metadata={"help": "GPU whose peak bf16 TFLOP/s prices the run (H100, H200, "
                                                        "B200, A100, ...)."})


def make_parser(prog: str | None = None) -> TSTParser:
    return TSTParser((PlanArguments, *TRAINING_ARGUMENTS), prog=prog, description=__doc__)


def main(argv: list[str] | None = None, prog: str | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    # The training arguments are read, not used to train: on the CPU, so that a GPU run's bf16 passes their checks.
    plan, model_args, data_args, _, args = make_parser(prog).parse_args_and_config([*argv, "--use_cpu", "true"])
    text = report(model_on_meta(model_args), args, data_args.block_size, plan.num_processes, plan.dataset_tokens,
                  plan.mfu, plan.gpu)
    print(text)
    return text


if __name__ == "__main__":
    run(main, prog="hf-tst plan")

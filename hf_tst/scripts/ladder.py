"""The budget ladder: TST's equal-loss speedup against the step budget T, and the crossover budget.

For one model and one TST setting: where TST starts to pay (see hf_tst/ladder.py for the method).

    hf-tst ladder --config recipes/configs/tiny.yaml --budgets 500 1000 2000 4000 \\
        [--baseline_budgets 500 1000 2000 4000 8000] [--decay_fraction 0.1] [--ladder_dir outputs/ladder] \\
        [--runs all|baseline|tst] [--field value ...]

The config's schedule must be warmup_stable_decay, with a whole number of warmup_steps and
save_strategy steps. The baseline (tst_ratio 0) is one stable run with a short decay branched off it
per baseline budget, in LADDER_DIR/baseline; TST is one run per budget, in LADDER_DIR/sS-rR (the
folder also names every other tst_* field that differs from its default). Ladders of other TST
settings over the same config share the baseline; a config that differs in anything else is refused
in the same LADDER_DIR, with the differences named. A killed ladder started again with the same
command resumes each unfinished run and skips the finished ones. `--runs baseline` and `--runs tst`
let two processes share the work of one ladder; the last to finish (or a plain rerun) writes
ladder.md, ladder.json and ladder.png in the TST folder: the table, the crossover and the plot
(speedup against T and against baseline data tokens per parameter, and both loss frontiers).
"""

import functools
import sys
from dataclasses import dataclass, field

from ..arguments import TRAINING_ARGUMENTS
from ..extras import require
from ..ladder import Ladder, run_settings
from ..parser import TSTParser
from ..pretraining import train_variant


@dataclass
class LadderArguments:
    _argument_group_name = "ladder"

    budgets: list[int] = field(default_factory=lambda: [500, 1000, 2000, 4000],
                               metadata={"help": "TST step budgets T."})
    baseline_budgets: list[int] = field(
        default_factory=list, metadata={"help": "More baseline budgets (the TST budgets are always run); add larger "
                                                "ones to measure speedups above T_max / T."})
    decay_fraction: float = field(
        default=0.1, metadata={"help": "Every run decays its learning rate linearly over this fraction of its budget."})
    ladder_dir: str = field(default="outputs/ladder", metadata={"help": "Where the runs and the report go."})
    runs: str = field(default="all", metadata={"choices": ("all", "baseline", "tst"),
                                               "help": "Which runs this process makes; the report is written once "
                                                       "all are done."})


def make_parser(prog: str | None = None) -> TSTParser:
    return TSTParser((LadderArguments, *TRAINING_ARGUMENTS), prog=prog, description=__doc__)


def main(argv: list[str] | None = None, prog: str | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    parser = make_parser(prog)
    own, model_args, data_args, _, args = parser.parse_args_and_config(argv)
    require("matplotlib", "plots", "hf-tst ladder's plot")
    ladder = Ladder(functools.partial(train_variant, parser, argv), args, run_settings(model_args, data_args, args),
                    own.budgets, own.baseline_budgets, own.ladder_dir, own.decay_fraction)
    if own.runs in ("all", "baseline"):
        ladder.run_baseline()
    if own.runs in ("all", "tst"):
        ladder.run_tst()
    if ladder.done():
        return ladder.report()
    others = "tst" if own.runs == "baseline" else "baseline"
    print(f"the {own.runs} runs are done in {own.ladder_dir}; the report is written when the {others} runs "
          f"(--runs {others}) finish too.")
    return None

"""The budget ladder: TST's equal-loss speedup against the step budget T, and the crossover budget.

For one model and one (s, r): where TST starts to pay (see hf_tst/ladder.py for the method).

    hf-tst ladder --config recipes/configs/tiny.yaml --budgets 500,1000,2000,4000 \\
        [--baseline_budgets 500,1000,2000,4000,8000] [--decay_fraction 0.1] [--ladder_dir outputs/ladder] \\
        [--runs all|baseline|tst] [--field value ...]

The config's schedule must be warmup_stable_decay. The baseline (tst_ratio 0) is one stable run
with a short decay branched off it per baseline budget, in LADDER_DIR/baseline; TST is one run per
budget, in LADDER_DIR/sS-rR. Ladders of other (s, r) over the same config (change only
--tst_bag_size and --tst_ratio) share the baseline. Every run saves as the config says, so a killed
ladder started again with the same command resumes each unfinished run from its newest complete
checkpoint and skips the finished ones. `--runs baseline` and `--runs tst` let two processes share
the work of one ladder; the last to finish (or a plain rerun) writes LADDER_DIR/sS-rR/ladder.md,
ladder.json and ladder.png: the table, the crossover and the plot (speedup against T and against
baseline data tokens per parameter, and both loss frontiers).
"""

import argparse
import functools
import json
import math
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from ..arguments import TRAINING_ARGUMENTS
from ..compare import eval_curve, loss_at
from ..config import superposition_steps
from ..extras import require
from ..ladder import (
    branch_step,
    crossover_budget,
    decay_steps,
    describe_crossover,
    ladder_table,
    plot_ladder,
    speedup_at,
)
from ..parser import TSTParser
from ..pretraining import train_variant
from ..resume import checkpoint_is_complete, newest_complete_checkpoint
from ..switch import switch_figures


@dataclass
class LadderArguments:
    budgets: str = field(default="500,1000,2000,4000", metadata={"help": "TST step budgets T, comma-separated."})
    baseline_budgets: str | None = field(
        default=None, metadata={"help": "Baseline budgets (default: the TST budgets); add larger ones to measure "
                                        "speedups above T_max / T."})
    decay_fraction: float = field(
        default=0.1, metadata={"help": "Every run decays its learning rate linearly over this fraction of its budget."})
    ladder_dir: str = field(default="outputs/ladder", metadata={"help": "Where the runs and the report go."})
    runs: str = field(default="all", metadata={"choices": ("all", "baseline", "tst"),
                                               "help": "Which runs this process makes; the report is written once "
                                                       "all are done."})


def make_parser(prog: str | None = None) -> TSTParser:
    return TSTParser((LadderArguments, *TRAINING_ARGUMENTS), prog=prog, description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)


def finished(run_dir: str) -> dict | None:
    """The final eval metrics of a finished run (`pretrain` writes them last), else None."""
    path = os.path.join(run_dir, "eval_results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def checkpointed_steps(run_dir: str) -> int:
    """Steps of the newest complete checkpoint in `run_dir` (0 when it has none)."""
    newest = newest_complete_checkpoint(run_dir)
    return 0 if newest is None else int(newest.rsplit("-", 1)[1])


def train_once(train: Callable[..., dict], run_dir: str, start_from: str | None = None, **overrides) -> None:
    """One run of the ladder, `train(run_dir, **overrides)`: skipped when finished, resumed from its own
    newest complete checkpoint when killed, otherwise started (from `start_from`, a checkpoint, when given)."""
    if finished(run_dir):
        return
    resume = "last" if checkpointed_steps(run_dir) else start_from
    train(run_dir, **overrides, **({"resume_from_checkpoint": resume} if resume else {}))


def schedule(args, budget: int, decay: int, **wsd_kwargs) -> dict:
    """Overrides for a run of `budget` steps that decays over the last `decay`: the config's WSD schedule."""
    kwargs = {**(args.lr_scheduler_kwargs or {}), "num_decay_steps": decay, **wsd_kwargs}
    return {"max_steps": budget, "lr_scheduler_kwargs": json.dumps(kwargs)}


def run_baseline(train: Callable[..., dict], args, budgets: list[int], ladder_dir: str, decay_fraction: float) -> None:
    """The stable run, extended segment by segment to each budget's branch step, and each budget's decay
    branched from the checkpoint there."""
    stable_dir = os.path.join(ladder_dir, "baseline", "stable")
    for budget in budgets:
        start = branch_step(budget, decay_fraction)
        branch_dir = os.path.join(ladder_dir, "baseline", f"T{budget}")
        if finished(branch_dir):
            continue
        checkpoint = os.path.join(stable_dir, f"checkpoint-{start}")
        if not checkpoint_is_complete(checkpoint):
            reached = checkpointed_steps(stable_dir)
            if reached > start:
                raise ValueError(f"baseline budget {budget} branches at step {start}, but the stable run in "
                                 f"{stable_dir} has already passed it (step {reached}); add only budgets above "
                                 f"{reached}, or start a new --ladder_dir.")
            # The stable phase outlasts the segment, so the learning rate saved at its end is the stable one that
            # the branch's decay starts from (a schedule ending at `start` would save its final value, 0).
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Both num_training_steps and num_stable_steps")
                train(stable_dir, tst_ratio=0, **schedule(args, start, 0, num_stable_steps=start),
                      **({"resume_from_checkpoint": "last"} if reached else {}))
        train_once(train, branch_dir, start_from=checkpoint, tst_ratio=0,
                   **schedule(args, budget, decay_steps(budget, decay_fraction)))


def tst_dir(args, ladder_dir: str) -> str:
    """The folder of one (s, r)'s TST runs and report; ladders of several (s, r) share the baseline."""
    return os.path.join(ladder_dir, f"s{args.tst_bag_size}-r{args.tst_ratio:g}")


def run_tst(train: Callable[..., dict], args, budgets: list[int], ladder_dir: str, decay_fraction: float) -> None:
    for budget in budgets:
        train_once(train, os.path.join(tst_dir(args, ladder_dir), f"T{budget}"),
                   **schedule(args, budget, decay_steps(budget, decay_fraction)))


def log_history(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "trainer_state.json")) as f:
        return json.load(f)["log_history"]


def run_summary(run_dir: str) -> dict:
    """Final eval loss, data tokens read, eval curve and switch figures of a finished run."""
    history = log_history(run_dir)
    tokens = max((log.get("num_input_tokens_seen", 0) for log in history), default=0)
    return {"loss": finished(run_dir)["eval_loss"], "tokens": tokens, "curve": eval_curve(history),
            **switch_figures(history)}


def parameter_count(run_dir: str) -> int:
    """Parameters of the saved model, read from its safetensors header (nothing is loaded)."""
    from safetensors import safe_open

    with safe_open(os.path.join(run_dir, "model.safetensors"), "pt") as f:
        return sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())


def report(args, budgets: list[int], baseline_budgets: list[int], ladder_dir: str, decay_fraction: float) -> dict:
    baselines = {budget: run_summary(os.path.join(ladder_dir, "baseline", f"T{budget}")) for budget in baseline_budgets}
    frontier = {budget: summary["loss"] for budget, summary in baselines.items()}
    parameters = parameter_count(os.path.join(ladder_dir, "baseline", f"T{baseline_budgets[0]}"))
    tokens_per_step = baselines[baseline_budgets[0]]["tokens"] / baseline_budgets[0]
    stable_curve = eval_curve(log_history(os.path.join(ladder_dir, "baseline", "stable")))
    rows = []
    for budget in budgets:
        tst = run_summary(os.path.join(tst_dir(args, ladder_dir), f"T{budget}"))
        switch_step = superposition_steps(args.tst_ratio, budget)
        rows.append({"budget": budget, "switch_step": switch_step,
                     "tst_eval_loss_at_switch": dict((step, loss) for step, loss, _ in tst["curve"]).get(switch_step),
                     "baseline_eval_loss_at_switch": loss_at(stable_curve, switch_step),
                     "baseline_loss": frontier[budget], "tst_loss": tst["loss"],
                     **speedup_at(frontier, budget, tst["loss"]), "tst_tokens": tst["tokens"],
                     "baseline_tokens_per_parameter": budget * tokens_per_step / parameters,
                     **{key: value for key, value in tst.items() if key.startswith("tst_")}})
    speedups = [(row["budget"], row["speedup"]) for row in rows]
    title = f"TST s={args.tst_bag_size}, r={args.tst_ratio:g} vs baseline, {parameters / 1e6:.1f}M parameters"
    text = "\n".join([
        f"# Budget ladder: {title}", "",
        f"Baseline: one warmup-stable-decay run, branched into a linear decay over the last "
        f"{decay_fraction:.0%} of each budget ({', '.join(f'{b:,}' for b in baseline_budgets)} steps); TST: one "
        "run per budget with the same schedule. Speedup: the baseline steps to TST's final held-out loss "
        "(interpolated in log steps between the baseline's final losses) over TST's steps; '>' and '<' mark "
        "bounds where TST's loss lies outside the baseline's range.", "",
        ladder_table(rows), "",
        f"**Crossover budget** (speedup reaches 1.0): {describe_crossover(speedups)}.", "",
        "'held-out at switch': next-token eval loss of TST's model as superposition left it, and of the baseline's "
        "stable run at the same step (interpolated between its evaluations). 'training loss at switch': TST's "
        "next-token training loss on the first recovery batch (before its update) and the second (after it); "
        "'recovery steps': recovery steps until the 10-step running loss is back below the first.", "",
        "![speedup against budget](ladder.png)", ""])
    with open(os.path.join(tst_dir(args, ladder_dir), "ladder.md"), "w") as f:
        f.write(text)
    result = {"title": title, "parameters": parameters, "frontier": frontier, "rows": rows,
              "crossover_budget": crossover_budget(speedups), "crossover": describe_crossover(speedups)}
    with open(os.path.join(tst_dir(args, ladder_dir), "ladder.json"), "w") as f:
        json.dump(result, f, indent=2)
    plot_ladder(rows, frontier, os.path.join(tst_dir(args, ladder_dir), "ladder.png"), title)
    print(text)
    return result


def main(argv: list[str] | None = None, prog: str | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    parser = make_parser(prog)
    own, *_, args = parser.parse_args_and_config(argv)
    require("matplotlib", "plots", "hf-tst ladder's plot")
    budgets = sorted(int(b) for b in own.budgets.split(","))
    baseline_budgets = sorted({*budgets, *(int(b) for b in (own.baseline_budgets or "").split(",") if b)})
    if args.lr_scheduler_type.value != "warmup_stable_decay":
        raise ValueError(f"lr_scheduler_type={args.lr_scheduler_type.value!r}: the ladder branches the baseline's "
                         "decays off one stable run, so it needs --lr_scheduler_type warmup_stable_decay.")
    if args.tst_ratio <= 0:
        raise ValueError("tst_ratio=0: the ladder compares TST with its baseline; set --tst_ratio (e.g. 0.3).")
    early = [b for b in baseline_budgets if branch_step(b, own.decay_fraction) < args.warmup_steps]
    if early:
        raise ValueError(f"budgets {early} start their decay before warmup_steps={args.warmup_steps} ends; "
                         "use larger budgets or fewer warmup steps.")
    train = functools.partial(train_variant, parser, argv)
    if own.runs in ("all", "baseline"):
        run_baseline(train, args, baseline_budgets, own.ladder_dir, own.decay_fraction)
    if own.runs in ("all", "tst"):
        run_tst(train, args, budgets, own.ladder_dir, own.decay_fraction)
    done = all(finished(os.path.join(own.ladder_dir, "baseline", f"T{b}")) for b in baseline_budgets) and all(
        finished(os.path.join(tst_dir(args, own.ladder_dir), f"T{b}")) for b in budgets)
    return report(args, budgets, baseline_budgets, own.ladder_dir, own.decay_fraction) if done else None

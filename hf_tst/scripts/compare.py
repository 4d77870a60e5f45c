"""TST against its baseline at equal FLOPs: one config run twice, then a report.

The runs: `tst_ratio` as given, and `tst_ratio 0` (same steps, same per-step model shape).

    hf-tst compare --config recipes/configs/tiny.yaml [--field value ...] \\
        [--compare_dir outputs/compare] [--eval_limit N]

Writes COMPARE_DIR/report.md and report.json: final eval losses, downstream scores (the offline
lm-eval suite), the equal-loss speedup, and curves.png (eval loss against steps and against data
tokens). Each run's checkpoint, card and trainer state stay in COMPARE_DIR/{tst,baseline}.
Needs the `eval` and `plots` extras.

Its speedup reads the baseline's curve mid-run, before the baseline's learning rate has decayed, while
TST's final loss comes after TST's decay: whenever the crossing falls before the baseline's last step,
this flatters TST. For a speedup against properly decayed baselines of every budget, run the budget
ladder (`hf-tst ladder --config ... --budgets 500 1000 2000`).
"""

import json
import os
import sys
from dataclasses import dataclass, field

from ..arguments import TRAINING_ARGUMENTS
from ..compare import equal_loss_speedup, eval_curve, held_out_at_switch, plot_curves
from ..evaluation import evaluate, offline_tasks
from ..extras import require
from ..parser import TSTParser
from ..pretraining import train_variant
from ..switch import describe_switch, switch_figures


@dataclass
class CompareArguments:
    _argument_group_name = "compare"

    compare_dir: str = field(default="outputs/compare",
                             metadata={"help": "Where both runs (tst/, baseline/) and the report go."})
    eval_limit: int | None = field(default=None, metadata={"help": "Examples per downstream task (default: all)."})


def make_parser(prog: str | None = None) -> TSTParser:
    return TSTParser((CompareArguments, *TRAINING_ARGUMENTS), prog=prog, description=__doc__)


def run(parser: TSTParser, argv: list[str], output_dir: str, eval_limit: int | None, **overrides) -> dict:
    train_variant(parser, argv, output_dir, **overrides)
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        state = json.load(f)
    with offline_tasks() as task_dir:
        downstream = evaluate(output_dir, task_dir=task_dir, limit=eval_limit)["results"]
    return {"curve": eval_curve(state["log_history"]), "downstream": downstream,
            "switch": switch_figures(state["log_history"])}


def report(runs: dict, speedup: dict, switch_step: int) -> str:
    lines = ["# TST vs baseline at equal FLOPs", "",
             "| run | steps | data tokens | final eval loss | continuation acc_norm | cloze acc | bits/byte |",
             "|---|---|---|---|---|---|---|"]
    for name, result in runs.items():
        step, loss, tokens = result["curve"][-1]
        scores = result["downstream"]
        lines.append(f"| {name} | {step} | {tokens:,} | {loss:.4f} | "
                     f"{scores['pydocs_continuation']['acc_norm,none']:.3f} | {scores['pydocs_cloze']['acc,none']:.3f}"
                     f" | {scores['pydocs_bpb']['bits_per_byte,none']:.3f} |")
    needed = speedup["baseline_steps_to_tst_loss"]
    verdict = (f"The baseline reaches TST's final eval loss ({speedup['tst_final_eval_loss']:.4f}) at step "
               f"{needed:.0f}: an equal-loss speedup of **{speedup['speedup']:.2f}x**." if needed is not None else
               f"The baseline never reaches TST's final eval loss ({speedup['tst_final_eval_loss']:.4f}) within its "
               f"{runs['baseline']['curve'][-1][0]} steps (its best: "
               f"{min(loss for _, loss, _ in runs['baseline']['curve']):.4f}), so the speedup exceeds "
               f"{runs['baseline']['curve'][-1][0] / speedup['tst_steps']:.2f}x.")
    at_switch = held_out_at_switch(runs["tst"]["curve"], runs["baseline"]["curve"], switch_step)
    held_out = ("" if None in at_switch.values() else
                f" Its held-out next-token loss there was {at_switch['tst']:.4f}, against the baseline's "
                f"{at_switch['baseline']:.4f} at the same step.")
    lines += ["", verdict, "", describe_switch(runs["tst"]["switch"], switch_step) + held_out, "",
              "![eval loss against steps and data tokens](curves.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = make_parser(prog)
    own, *_, args = parser.parse_args_and_config(argv)
    require("lm_eval", "eval", "hf-tst compare's downstream scores")
    require("matplotlib", "plots", "hf-tst compare's curves")
    runs = {"tst": run(parser, argv, os.path.join(own.compare_dir, "tst"), own.eval_limit),
            "baseline": run(parser, argv, os.path.join(own.compare_dir, "baseline"), own.eval_limit, tst_ratio=0)}
    speedup = equal_loss_speedup(runs["baseline"]["curve"], runs["tst"]["curve"])
    plot_curves({name: result["curve"] for name, result in runs.items()},
                os.path.join(own.compare_dir, "curves.png"), args.superposition_steps)
    with open(os.path.join(own.compare_dir, "report.json"), "w") as f:
        json.dump({"speedup": speedup, **{name: result for name, result in runs.items()}}, f, indent=2)
    text = report(runs, speedup, args.superposition_steps)
    with open(os.path.join(own.compare_dir, "report.md"), "w") as f:
        f.write(text)
    print(f"{text}\nreport.md, report.json and curves.png in {own.compare_dir}")
    return {"speedup": speedup, "runs": runs}

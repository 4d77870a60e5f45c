"""TST against its baseline at equal FLOPs: the same config run twice, with `tst_ratio` as given and
with `tst_ratio 0` (same steps, same per-step model shape), then a report.

    python recipes/compare.py --config recipes/configs/tiny.yaml [--field value ...] \\
        [--compare_dir outputs/compare] [--eval_limit N]

Writes COMPARE_DIR/report.md and report.json: final eval losses, downstream scores (the offline
lm-eval suite), the equal-loss speedup, and curves.png (eval loss against steps and against data
tokens). Each run's checkpoint, card and trainer state stay in COMPARE_DIR/{tst,baseline}.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import ARGUMENT_CLASSES, parse_config, train_variant  # noqa: E402

from hf_tst.compare import equal_loss_speedup, eval_curve, loss_at, plot_curves  # noqa: E402
from hf_tst.evaluation import evaluate, write_offline_tasks  # noqa: E402
from hf_tst.switch import describe_switch, switch_figures  # noqa: E402


def run(train_argv: list[str], output_dir: str, eval_limit: int | None, **overrides) -> dict:
    train_variant(train_argv, output_dir, **overrides)
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        state = json.load(f)
    downstream = evaluate(output_dir, task_dir=write_offline_tasks(os.path.join(output_dir, "lm_eval_tasks")),
                          limit=eval_limit)["results"]
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
    at_switch = dict((step, loss) for step, loss, _ in runs["tst"]["curve"]).get(switch_step)
    baseline_at_switch = loss_at(runs["baseline"]["curve"], switch_step)
    held_out = ("" if at_switch is None or baseline_at_switch is None else
                f" Its held-out next-token loss there was {at_switch:.4f}, against the baseline's "
                f"{baseline_at_switch:.4f} at the same step.")
    lines += ["", verdict, "", describe_switch(runs["tst"]["switch"], switch_step) + held_out, "",
              "![eval loss against steps and data tokens](curves.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--compare_dir", default="outputs/compare")
    parser.add_argument("--eval_limit", type=int, default=None)
    own, train_argv = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    runs = {"tst": run(train_argv, os.path.join(own.compare_dir, "tst"), own.eval_limit),
            "baseline": run(train_argv, os.path.join(own.compare_dir, "baseline"), own.eval_limit, tst_ratio=0)}
    switch_step = parse_config(ARGUMENT_CLASSES, train_argv)[-1].superposition_steps
    speedup = equal_loss_speedup(runs["baseline"]["curve"], runs["tst"]["curve"])
    plot_curves({name: result["curve"] for name, result in runs.items()},
                os.path.join(own.compare_dir, "curves.png"), switch_step)
    with open(os.path.join(own.compare_dir, "report.json"), "w") as f:
        json.dump({"speedup": speedup, **{name: result for name, result in runs.items()}}, f, indent=2)
    text = report(runs, speedup, switch_step)
    with open(os.path.join(own.compare_dir, "report.md"), "w") as f:
        f.write(text)
    print(text)
    return {"speedup": speedup, "runs": runs}


if __name__ == "__main__":
    main()

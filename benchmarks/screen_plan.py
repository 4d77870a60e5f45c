"""The screen's step count, from the preflight's measured speed: both runs must finish inside the budget.

The preflight trained a few steps of both screen runs at full size, concurrently, as the screen runs them
(`gpu_screen.sh`). From their logs (`tst_seconds_per_step` per logging window, the first window of each
phase left out as warm-up) and their wall time:

    t         = max(t_baseline, r * t_superposition + (1 - r) * t_recovery)     seconds per step, the slower run
    overhead  = preflight wall - the slower run's steps at that speed   start-up, warm-up, final eval, save, card
    usable    = (seconds_left - REPORT_SECONDS) * (1 - MARGIN) - overhead - evaluations * eval_seconds
    steps     = min(max_steps, floor(usable / t))

`max_steps` is the run's (the config's, the replication's 3,000); `evaluations` is its count of evaluations
(max_steps / eval_steps, and one at TST's switch), each timed as the preflight's final one; `seconds_left` is
counted from this script's start, its own imports included. Warm-up, decay and evaluation interval
keep their fractions of max_steps, the same for both runs. Too few steps for a screen stop it with one line.

    python benchmarks/screen_plan.py --preflight B_DIR T_DIR --wall S --seconds_left S --min_steps N \\
        --args_out plan.args --json_out plan.json -- RUN FLAGS (the TST run's, as passed to recipes/train.py)

Writes the flags that size both runs (one per line) and the figures for the report, and prints them.
"""

import argparse
import json
import math
import statistics
import sys
import time

STARTED = time.monotonic()  # before hf_tst's imports (in main), whose seconds come out of the time left
REPORT_SECONDS = 20  # the report and the copies after both runs
MARGIN = 0.1  # of the time left: the speed measured in a few steps is not the speed of thousands


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preflight", nargs=2, required=True, metavar=("BASELINE", "TST"))
    parser.add_argument("--wall", type=float, required=True, help="wall seconds of the two preflight runs")
    parser.add_argument("--seconds_left", type=float, required=True,
                        help="of the command's budget when this script starts")
    parser.add_argument("--min_steps", type=int, required=True, help="fewer than this is no screen: stop")
    parser.add_argument("--args_out", required=True)
    parser.add_argument("--json_out", required=True)
    parser.add_argument("run", nargs=argparse.REMAINDER, help="-- then the TST run's flags")
    return parser.parse_args()


def windows(history: list[dict], superposed: bool, keep_first: bool = False) -> list[dict]:
    """The phase's timed logging windows, each with the steps it covered, less the phase's first (warm-up;
    in recovery, the switch) unless it is the only one or `keep_first`."""
    timed, previous_step = [], 0
    for log in history:
        if "tst_seconds_per_step" in log:
            if (log["tst_bag_size"] > 1) == superposed:
                timed.append({**log, "steps": log["step"] - previous_step})
            previous_step = log["step"]
    return timed if keep_first else timed[1:] or timed


def phase_figures(history: list[dict], superposed: bool) -> dict:
    """The phase's median seconds per step and MFU over its measured windows, its peak memory, and the steps
    it ran (all its windows)."""
    steps = sum(log["steps"] for log in windows(history, superposed, keep_first=True))
    measured = windows(history, superposed)
    mfu = [log["tst_mfu"] for log in measured if "tst_mfu" in log]
    memory = [log["tst_peak_memory_gib"] for log in measured if "tst_peak_memory_gib" in log]
    return {"seconds_per_step": statistics.median(log["tst_seconds_per_step"] for log in measured), "steps": steps,
            "mfu": statistics.median(mfu) if mfu else None, "peak_memory_gib": max(memory) if memory else None}


def steady_seconds(*phases: dict) -> float:
    """What a run's steps would take at the measured (steady) speed of each of its phases."""
    return sum(phase["steps"] * phase["seconds_per_step"] for phase in phases)


def main():
    from hf_tst.ladder import log_history
    from hf_tst.scripts.train import make_parser

    args = parse_args()
    run = make_parser().parse_args_and_config([flag for flag in args.run if flag != "--"])[-1]
    baseline, tst = (log_history(path) for path in args.preflight)
    phases = {"baseline": phase_figures(baseline, superposed=False),
              "TST superposition": phase_figures(tst, superposed=True),
              "TST recovery": phase_figures(tst, superposed=False)}
    ratio = run.tst_ratio
    tst_step = (ratio * phases["TST superposition"]["seconds_per_step"]
                + (1 - ratio) * phases["TST recovery"]["seconds_per_step"])
    step = max(phases["baseline"]["seconds_per_step"], tst_step)
    overhead = args.wall - max(steady_seconds(phases["baseline"]),
                               steady_seconds(phases["TST superposition"], phases["TST recovery"]))
    eval_seconds = max(log["eval_runtime"] for history in (baseline, tst) for log in history if "eval_runtime" in log)
    evaluations = run.max_steps // run.eval_steps + 1  # and one at TST's switch
    seconds_left = args.seconds_left - (time.monotonic() - STARTED)
    usable = (seconds_left - REPORT_SECONDS) * (1 - MARGIN) - overhead - evaluations * eval_seconds
    steps = min(run.max_steps, math.floor(usable / step))
    arithmetic = (f"steps = min({run.max_steps:,}, floor((({seconds_left:.0f} s left - {REPORT_SECONDS}) x "
                  f"{1 - MARGIN:g} - {overhead:.1f} s overhead - {evaluations} evaluations x {eval_seconds:.1f} s) "
                  f"/ {step:.3f} s per step)) = {steps:,}")
    print("| run | s/step | peak memory so far (GiB) | MFU |\n|---|---|---|---|")
    for name, figures in phases.items():
        memory, mfu = figures["peak_memory_gib"], figures["mfu"]
        print(f"| {name} | {figures['seconds_per_step']:.3f} | {'n/a' if memory is None else f'{memory:.1f}'} | "
              f"{'n/a' if mfu is None else f'{mfu:.1%}'} |")
    print(arithmetic)
    if steps < args.min_steps:
        sys.exit(f"screen_plan: stopped before the screen: {steps:,} steps fit in the {seconds_left:.0f} s "
                 f"left ({step:.3f} s per step measured), fewer than the {args.min_steps:,} a screen needs; give "
                 "the command more time (SCREEN_SECONDS) or shrink the model in recipes/configs/screen.yaml.")
    scale = steps / run.max_steps
    decay = {**(run.lr_scheduler_kwargs or {})}
    if "num_decay_steps" in decay:
        decay["num_decay_steps"] = max(1, round(decay["num_decay_steps"] * scale))
    flags = {"max_steps": steps, "warmup_steps": round(run.warmup_steps * scale),
             "eval_steps": max(1, round(run.eval_steps * scale)), "lr_scheduler_kwargs": json.dumps(decay)}
    with open(args.args_out, "w") as f:
        f.write("".join(f"--{name}\n{value}\n" for name, value in flags.items()))
    with open(args.json_out, "w") as f:
        json.dump({"phases": phases, "seconds_per_step": step, "overhead_seconds": overhead,
                   "eval_seconds": eval_seconds, "evaluations": evaluations, "seconds_left": seconds_left,
                   "predicted_seconds": overhead + evaluations * eval_seconds + steps * step,
                   "arithmetic": arithmetic, "flags": flags, "config_max_steps": run.max_steps}, f, indent=2)
    print("plan: " + " ".join(f"--{name} {value}" for name, value in flags.items()))


if __name__ == "__main__":
    main()

"""The GPU screen's report: a baseline and a TST run of one recipe, side by side.

Both runs' final held-out next-token losses and their difference in nats, the data tokens and epochs each
read, the held-out curves (screen-curves.png beside the report), the wall time and the hardware line.

    python benchmarks/screen_report.py --runs OUT/baseline OUT/tst --manifest DATA/manifest.json \\
        --hardware "..." --seconds N --output REPORT.md
"""

import argparse
import json
import os

from hf_tst.compare import eval_curve, plot_curves
from hf_tst.ladder import finished, log_history, parameter_count


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs=2, required=True, metavar=("BASELINE", "TST"))
    parser.add_argument("--manifest", required=True, help="the data's manifest.json (benchmarks/screen_data.py)")
    parser.add_argument("--hardware", required=True)
    parser.add_argument("--seconds", type=int, required=True, help="wall time of the two concurrent runs")
    parser.add_argument("--output", required=True)
    return parser.parse_args()


def summary(run_dir: str, corpus_tokens: int) -> dict:
    history = log_history(run_dir)
    tokens = max(log.get("num_input_tokens_seen", 0) for log in history)
    return {"loss": finished(run_dir)["eval_loss"], "steps": max(log.get("step", 0) for log in history),
            "tokens": tokens, "epochs": tokens / corpus_tokens, "curve": eval_curve(history),
            "runtime": next((log["train_runtime"] for log in history if "train_runtime" in log), float("nan")),
            "switch": max((log["step"] for log in history if log.get("tst_bag_size", 1) > 1), default=None)}


def main():
    args = parse_args()
    with open(args.manifest) as f:
        manifest = json.load(f)
    runs = {name: summary(path, manifest["train_tokens"]) for name, path in zip(("baseline", "tst"), args.runs,
                                                                              strict=True)}
    parameters = parameter_count(args.runs[0])
    difference = runs["tst"]["loss"] - runs["baseline"]["loss"]
    verdict = "ahead of" if difference < 0 else "behind"
    lines = [f"<!-- {args.hardware} -->", "", "# 100M screen: TST s=6, r=0.3 against its baseline", "",
             f"{parameters / 1e6:.1f}M parameters; the same recipe and {runs['tst']['steps']:,} steps each, run "
             f"concurrently in {args.seconds} s; data: {manifest['train_tokens']:,} tokens in blocks of "
             f"{manifest['block_size']:,} ({manifest['mib']} MiB carried), held out: {manifest['validation_blocks']} "
             "blocks.", "",
             "| run | steps | data tokens read | epochs read | train runtime (s) | final held-out loss |",
             "|---|---|---|---|---|---|"]
    for name, run in runs.items():
        lines.append(f"| {name} | {run['steps']:,} | {run['tokens']:,} | {run['epochs']:.2f} | {run['runtime']:.0f} "
                     f"| {run['loss']:.4f} |")
    lines += ["", f"**TST {verdict} the baseline by {abs(difference):.4f} nats** (TST {runs['tst']['loss']:.4f}, "
              f"baseline {runs['baseline']['loss']:.4f}, next-token loss on the held-out blocks).", "",
              "![held-out loss against steps and data tokens](screen-curves.png)", ""]
    text = "\n".join(lines)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    plot_curves({name: run["curve"] for name, run in runs.items()},
                os.path.join(os.path.dirname(os.path.abspath(args.output)), "screen-curves.png"),
                switch_step=runs["tst"]["switch"])
    print(text)


if __name__ == "__main__":
    main()

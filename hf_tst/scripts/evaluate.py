"""Evaluate a checkpoint 0-shot with the EleutherAI harness (lm-eval): results.json and results.md.

    hf-tst evaluate outputs/tiny-tst                        # offline suite from the embedded corpus
    hf-tst evaluate outputs/tiny-tst --tasks paper          # the paper's tasks (needs the Hub)
    hf-tst evaluate outputs/tiny-tst --tasks arc_easy,piqa --limit 100

Needs the `eval` extra. The offline suite's task files live in a temporary folder, never in the model's.
In-process, right after training: `with hf_tst.evaluation.offline_tasks() as task_dir:
hf_tst.evaluation.evaluate(trainer.model, tokenizer, task_dir=task_dir)`.
"""

import argparse
import contextlib
import json
import os

from ..evaluation import PAPER_TASKS, evaluate, offline_tasks, results_table
from ..extras import require
from ..parser import HelpFormatter


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("checkpoint", help="Model folder or Hub id.")
    parser.add_argument("--tasks", default="offline",
                        help="'offline' (the embedded suite), 'paper' (the paper's 8 tasks, from the Hub), or "
                             "comma-separated lm-eval task names.")
    parser.add_argument("--output_dir", default=None, help="Where results.json and results.md go (default: the "
                                                           "checkpoint's folder; for a Hub id, outputs/eval/ID with "
                                                           "its / as --).")
    parser.add_argument("--limit", type=int, default=None, help="Examples per task, for quick checks.")
    parser.add_argument("--batch_size", type=int, default=8, help="Examples per forward pass.")
    parser.add_argument("--device", default="cpu", help="Torch device to evaluate on, e.g. cpu or cuda:0.")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    args = make_parser(prog).parse_args(argv)
    require("lm_eval", "eval", "hf-tst evaluate")
    output_dir = args.output_dir or (args.checkpoint if os.path.isdir(args.checkpoint) else
                                     os.path.join("outputs", "eval", args.checkpoint.replace("/", "--")))
    os.makedirs(output_dir, exist_ok=True)

    tasks = None if args.tasks == "offline" else PAPER_TASKS if args.tasks == "paper" else args.tasks.split(",")
    with offline_tasks() if args.tasks == "offline" else contextlib.nullcontext() as task_dir:
        results = evaluate(args.checkpoint, tasks=tasks, task_dir=task_dir, batch_size=args.batch_size,
                           limit=args.limit, device=args.device)
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump({"results": results["results"], "config": {"limit": args.limit, "tasks": args.tasks}}, f, indent=2)
    table = results_table(results)
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write(table)
    print(f"{table}\nresults.json and results.md in {output_dir}")
    return results

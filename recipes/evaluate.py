"""Evaluate a checkpoint 0-shot with the EleutherAI harness (lm-eval); writes results.json and results.md.

    python recipes/evaluate.py outputs/tiny-tst                     # offline suite from the embedded corpus
    python recipes/evaluate.py outputs/tiny-tst --tasks paper       # the paper's tasks (needs the Hub)
    python recipes/evaluate.py outputs/tiny-tst --tasks arc_easy,piqa --limit 100

In-process, right after training: `hf_tst.evaluation.evaluate(trainer.model, tokenizer, task_dir=...)`.
"""

import argparse
import json
import os

from hf_tst.evaluation import PAPER_TASKS, evaluate, results_table, write_offline_tasks


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="model folder or Hub id")
    parser.add_argument("--tasks", default="offline",
                        help="'offline' (the embedded suite), 'paper' (the paper's 8 tasks), or comma-separated names")
    parser.add_argument("--output_dir", default=None, help="where results.json/.md go (default: the checkpoint)")
    parser.add_argument("--limit", type=int, default=None, help="examples per task, for quick checks")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    output_dir = args.output_dir or args.checkpoint
    os.makedirs(output_dir, exist_ok=True)

    task_dir = write_offline_tasks(os.path.join(output_dir, "lm_eval_tasks")) if args.tasks == "offline" else None
    tasks = None if args.tasks in ("offline", "paper") else args.tasks.split(",")
    results = evaluate(args.checkpoint, tasks=tasks or (None if task_dir else PAPER_TASKS), task_dir=task_dir,
                       batch_size=args.batch_size, limit=args.limit, device=args.device)
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump({"results": results["results"], "config": {"limit": args.limit, "tasks": args.tasks}}, f, indent=2)
    table = results_table(results)
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write(table)
    print(table)
    return results


if __name__ == "__main__":
    main()

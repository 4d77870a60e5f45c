"""Downstream evaluation with the EleutherAI harness (lm-eval), 0-shot.

Online, the paper's tasks by name (`PAPER_TASKS`). Offline, a suite built from the embedded
corpus's held-out split, written as lm-eval task YAMLs over local JSON lines:

- `pydocs_continuation`: HellaSwag-style; pick the true continuation of a passage among four
  (the other three are continuations of other passages); acc and acc_norm.
- `pydocs_cloze`: LAMBADA-style; the last word of a passage given the rest; acc and perplexity.
- `pydocs_bpb`: rolling log-likelihood of whole passages; bits per byte (and word/byte perplexity).
"""

import contextlib
import gzip
import json
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from .extras import require

PAPER_TASKS = ["arc_easy", "arc_challenge", "boolq", "hellaswag", "mmlu", "openbookqa", "piqa", "winogrande"]
OFFLINE_TASKS = ["pydocs_continuation", "pydocs_cloze", "pydocs_bpb"]
HELD_OUT = Path(__file__).parent / "resources" / "python-docs-validation.jsonl.gz"  # the embedded held-out split
CONTEXT_WORDS, ENDING_WORDS, PASSAGE_WORDS = 48, 16, 64


def held_out_passages(path: Path = HELD_OUT, limit: int = 200) -> list[str]:
    """Prose passages of the held-out pages: paragraphs of at least PASSAGE_WORDS words, without markup lines."""
    passages = []
    with gzip.open(path, "rt") as f:
        for line in f:
            for paragraph in json.loads(line)["text"].split("\n\n"):
                words = paragraph.split()
                if len(words) >= PASSAGE_WORDS and not paragraph.lstrip().startswith((".. ", "::", "   ")):
                    passages.append(" ".join(words[: CONTEXT_WORDS + ENDING_WORDS]))
    return passages[:limit]


def write_offline_tasks(folder: str, passages: list[str] | None = None, seed: int = 0) -> str:
    """Write the offline suite (data and task YAMLs) into `folder`; returns it, for TaskManager(include_path=...)."""
    passages = held_out_passages() if passages is None else passages
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    endings = [" ".join(p.split()[CONTEXT_WORDS:]) for p in passages]
    continuation = []
    for n, passage in enumerate(passages):
        distractors = rng.sample([e for m, e in enumerate(endings) if m != n], 3)
        label = rng.randrange(4)
        choices = distractors[:label] + [endings[n]] + distractors[label:]
        continuation.append({"context": " ".join(passage.split()[:CONTEXT_WORDS]), "endings": choices, "label": label})
    # The cloze and bits-per-byte tasks read the same passages.
    rows = {"pydocs_continuation": continuation, "pydocs_cloze": [{"text": p} for p in passages]}
    rows["pydocs_bpb"] = rows["pydocs_cloze"]
    # Every metric names its aggregation and direction, and the suite its 0 shots, so lm-eval has nothing to guess.
    common = {"dataset_path": "json", "test_split": "test", "num_fewshot": 0, "metadata": {"version": 1.0}}
    tasks = {
        "pydocs_continuation": {"output_type": "multiple_choice", "doc_to_text": "{{context}}",
                                "doc_to_choice": "{{endings}}", "doc_to_target": "{{label}}",
                                "metric_list": [metric("acc", "mean", True), metric("acc_norm", "mean", True)]},
        "pydocs_cloze": {"output_type": "loglikelihood", "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}",
                         "doc_to_target": "{{' '+text.split(' ')[-1]}}",
                         "metric_list": [metric("perplexity", "perplexity", False), metric("acc", "mean", True)]},
        "pydocs_bpb": {"output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{text}}",
                       "metric_list": [metric("word_perplexity", "weighted_perplexity", False),
                                       metric("byte_perplexity", "weighted_perplexity", False),
                                       metric("bits_per_byte", "bits_per_byte", False)]},
    }
    for task, spec in tasks.items():
        data = os.path.abspath(os.path.join(folder, f"{task}.jsonl"))
        with open(data, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows[task])
        config = {"task": task, **common, "dataset_kwargs": {"data_files": {"test": data}}, **spec}
        with open(os.path.join(folder, f"{task}.yaml"), "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
    return folder


def metric(name: str, aggregation: str, higher_is_better: bool) -> dict:
    """One entry of a task YAML's `metric_list`."""
    return {"metric": name, "aggregation": aggregation, "higher_is_better": higher_is_better}


@contextlib.contextmanager
def offline_tasks() -> Iterator[str]:
    """The offline suite written into a temporary folder, removed afterwards: evaluating a model folder leaves
    no task files in it (a push would upload them)."""
    with tempfile.TemporaryDirectory(prefix="hf_tst_lm_eval_tasks-") as folder:
        yield write_offline_tasks(folder)


def evaluate(model, tokenizer=None, tasks: list[str] | None = None, task_dir: str | None = None,
             batch_size: int = 8, limit: int | None = None, device: str = "cpu") -> dict:
    """0-shot lm-eval results for `model` (a path, a Hub id, or an in-memory model with its tokenizer).

    Without `task_dir` the tasks are looked up in lm-eval's own registry (online) and run with 0 shots; with
    it, only in that folder (the offline suite of `offline_tasks` or `write_offline_tasks`), with the shots
    its YAMLs declare (0 when they declare none)."""
    require("lm_eval", "eval", "downstream evaluation")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    manager = TaskManager(include_path=task_dir, include_defaults=False) if task_dir else TaskManager()
    return simple_evaluate(model=lm, tasks=tasks or (OFFLINE_TASKS if task_dir else PAPER_TASKS),
                           num_fewshot=None if task_dir else 0,
                           limit=limit, task_manager=manager, log_samples=False)


def results_table(results: dict) -> str:
    """Markdown table of every task's metrics (standard errors dropped)."""
    lines = ["| task | metric | value |", "|---|---|---|"]
    for task, metrics in sorted(results["results"].items()):
        for key, value in sorted(metrics.items()):
            if isinstance(value, float) and "_stderr" not in key:
                lines.append(f"| {task} | {key.split(',')[0]} | {value:.4f} |")
    return "\n".join(lines) + "\n"

"""Reliability figures: what a cluster does to a long run, injected into the real `hf-tst train` at tiny size.

Every case runs `hf-tst train` (the launcher and its trainers, in a session of their own) on a shrunk
tiny config (a one-layer model, 12 steps, switch after step 3, a checkpoint every 2 steps), injects one fault
(`fault_injection/sitecustomize.py`, on the PYTHONPATH of every process), and compares what happened with an
uninterrupted run of the same config: exit status, which checkpoints are whole, and the per-step losses once
resumed. It prints one table, case | expected | observed | verdict, and writes it to `--out`.

    python benchmarks/faults.py [--cases NAME ...] [--out benchmarks/results/faults-cpu.md]

A verdict is `ok` only when the run that was resumed logs exactly the uninterrupted run's losses (nothing trained
wrong, nothing lost), or when the fault is refused before any compute with one line naming it.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from measure import markdown_table, publish

from hf_tst.checkpoints import newest_complete_checkpoint
from hf_tst.preemption import PREEMPTED_EXIT_CODE
from hf_tst.run_lock import hold_output_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HF_TST = os.path.join(os.path.dirname(sys.executable), "hf-tst")
TINY = ["--config", "recipes/configs/tiny.yaml", "--train_files", "recipes/data/python-docs/validation.jsonl.gz",
        "--config_overrides", "hidden_size=32,intermediate_size=64,num_hidden_layers=1", "--max_steps", "12",
        "--tst_ratio", "0.25", "--per_device_train_batch_size", "4", "--warmup_steps", "2",
        "--lr_scheduler_kwargs", '{"num_decay_steps": 4, "decay_type": "linear"}', "--logging_steps", "1",
        "--eval_strategy", "no", "--save_steps", "2", "--save_total_limit", "100", "--max_eval_blocks", "8",
        "--disable_tqdm", "true", "--use_cpu", "true"]


def hf_tst_train(output_dir: str, *flags: str, faults: dict | None = None) -> subprocess.CompletedProcess:
    """`hf-tst train` on the tiny config into `output_dir`, in a session of its own, with `faults` injected."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(faults or {}),
           "PYTHONPATH": os.pathsep.join([os.path.join(REPO, "benchmarks", "fault_injection"), REPO])}
    return subprocess.run([HF_TST, "train", *TINY, "--output_dir", output_dir, *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, start_new_session=True)


def losses(output_dir: str) -> dict[int, float]:
    """The per-step training losses logged by the newest whole checkpoint of `output_dir`."""
    with open(os.path.join(newest_complete_checkpoint(output_dir), "trainer_state.json")) as f:
        return {log["step"]: log["loss"] for log in json.load(f)["log_history"] if "loss" in log}


def error_line(result: subprocess.CompletedProcess) -> str:
    """The line `hf-tst train` prints for a usage mistake (`error:`) or a runtime failure (`failed`)."""
    lines = [line for line in result.stderr.splitlines() if re.match("hf-tst train: (error:|failed)", line)]
    return lines[-1] if lines else f"(no error line; status {result.returncode})"


def quote(line: str, phrase: str) -> str:
    """The part of `line` from `phrase` to the end of its clause, or the line's start."""
    found = re.search(re.escape(phrase) + "[^.;]*", line)
    return found.group(0) if found else line[:90]


class Cases:
    """Each case returns (expected, observed, ok). `reference` is the uninterrupted run's losses."""

    def __init__(self, scratch: str):
        self.scratch = scratch
        self.references = {}

    def folder(self, name: str) -> str:
        return os.path.join(self.scratch, name)

    def uninterrupted(self, *launch: str) -> dict[int, float]:
        """The losses of the run uninterrupted, launched with `launch` (the first one's folder is `reference`)."""
        if launch not in self.references:
            out = self.folder("reference" + "-".join(launch))
            result = hf_tst_train(out, *launch)
            assert result.returncode == 0, result.stderr[-3000:]
            self.references[launch] = losses(out)
        return self.references[launch]

    def resumed_matches(self, out: str, *flags: str, launch: tuple[str, ...] = ()) -> tuple[bool, str]:
        resumed = hf_tst_train(out, "--resume_from_checkpoint", "last", *launch, *flags)
        same = resumed.returncode == 0 and losses(out) == self.uninterrupted(*launch)
        return same, "resumed: the uninterrupted losses" if same else f"resumed: status {resumed.returncode}, " \
            "losses differ" if resumed.returncode == 0 else f"resume failed: {error_line(resumed)}"

    def preempted(self, name, faults, *flags, step, launch: tuple[str, ...] = ()):
        out = self.folder(name)
        result = hf_tst_train(out, *launch, *flags, faults=faults)
        whole = newest_complete_checkpoint(out)
        saved = whole is not None and whole.endswith(f"checkpoint-{step}")
        same, resumed = self.resumed_matches(out, *flags, launch=launch)
        observed = f"status {result.returncode}; newest whole checkpoint {os.path.basename(whole or 'none')}; {resumed}"
        return (f"status {PREEMPTED_EXIT_CODE}; checkpoint-{step} whole; resumed: the uninterrupted losses", observed,
                result.returncode == PREEMPTED_EXIT_CODE and saved and same)

    def group_sigterm_with_workers(self):
        """SIGTERM to the whole process tree (launcher, trainer, 2 DataLoader workers) at step 5."""
        return self.preempted("workers", {"HF_TST_FAULT_GROUP_SIGTERM_AT": "5"}, "--dataloader_num_workers", "2",
                              step=5)

    def slow_save_and_second_signal(self):
        """SIGTERM to the tree at step 7; the save takes 8 s more, past the launcher's 5 s grace, and a second SIGTERM
        arrives during it."""
        return self.preempted("slow-save", {"HF_TST_FAULT_GROUP_SIGTERM_AT": "7", "HF_TST_FAULT_SLOW_SAVE": "8"},
                              step=7)

    def two_processes_slow_save(self):
        """Two processes under torch elastic (--num_processes 2), its grace cut to 2 s: SIGTERM to the tree at step 7,
        the save 6 s longer, a second SIGTERM to the tree during it."""
        return self.preempted("two-processes", {"HF_TST_FAULT_GROUP_SIGTERM_AT": "7", "HF_TST_FAULT_SLOW_SAVE": "6",
                                                "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "2"},
                              step=7, launch=("--num_processes", "2"))

    def sigkill_during_save(self):
        """SIGKILL to the whole tree in the middle of step 6's save (a lost node)."""
        out = self.folder("sigkill")
        result = hf_tst_train(out, faults={"HF_TST_FAULT_SIGKILL_IN_SAVE": "6"})
        whole = os.path.basename(newest_complete_checkpoint(out) or "none")
        same, resumed = self.resumed_matches(out)
        return ("killed; checkpoint-6 not whole; last takes checkpoint-4; resumed: the uninterrupted losses",
                f"status {result.returncode}; newest whole {whole}; {resumed}",
                result.returncode < 0 and whole == "checkpoint-4" and same)

    def full_disk(self):
        """Step 6's save fails with ENOSPC."""
        out = self.folder("full-disk")
        result = hf_tst_train(out, faults={"HF_TST_FAULT_FULL_DISK_AT": "6"})
        line = error_line(result)
        named = "checkpoint-6" in line and "No space left on device" in line and "checkpoint-4" in line
        traceback = "Traceback (most recent call last)" in result.stderr
        same, resumed = self.resumed_matches(out)
        return ("status 1; a line naming step 6, checkpoint-6, the cause and checkpoint-4, then the traceback; "
                "resumed: the uninterrupted losses",
                f"status {result.returncode}; {line[:110]}...{'; traceback' if traceback else ''}; {resumed}",
                result.returncode == 1 and named and traceback and same)

    def damaged(self, name: str, damage, named: str):
        out = self.folder(name)
        shutil.copytree(self.folder("reference"), out)
        for gone in ("checkpoint-12", "checkpoint-10"):
            shutil.rmtree(os.path.join(out, gone))
        damage(os.path.join(out, "checkpoint-8"))
        explicit = hf_tst_train(out, "--resume_from_checkpoint", os.path.join(out, "checkpoint-8"))
        refused = explicit.returncode == 2 and named in error_line(explicit)
        same, resumed = self.resumed_matches(out)
        return (f"named: refused naming {named}; last: checkpoint-6, the uninterrupted losses",
                f"named: status {explicit.returncode}, {quote(error_line(explicit), named)}; last: {resumed}",
                refused and same)

    def torn_weights(self):
        """The newest checkpoint's model.safetensors cut short."""
        def tear(folder):
            path = os.path.join(folder, "model.safetensors")
            os.truncate(path, os.path.getsize(path) // 2)
        self.uninterrupted()
        return self.damaged("torn", tear, "model.safetensors is torn")

    def missing_optimizer(self):
        """The newest checkpoint lost optimizer.pt."""
        self.uninterrupted()
        return self.damaged("no-optimizer", lambda folder: os.remove(os.path.join(folder, "optimizer.pt")),
                            "optimizer.pt is missing")

    def ignore_data_skip(self):
        """Resumed after the switch from checkpoint-6 with --ignore_data_skip true."""
        out = self.folder("ignore-data-skip")
        self.uninterrupted()
        shutil.copytree(self.folder("reference"), out)
        for gone in ("checkpoint-12", "checkpoint-10", "checkpoint-8"):
            shutil.rmtree(os.path.join(out, gone))
        same, resumed = self.resumed_matches(out, "--ignore_data_skip", "true")
        return "the uninterrupted losses (recovery rows from step 7 on)", resumed, same

    def finished_run(self):
        """A finished run requeued: resume_from_checkpoint last."""
        out = self.folder("finished")
        self.uninterrupted()
        shutil.copytree(self.folder("reference"), out)
        result = hf_tst_train(out, "--resume_from_checkpoint", "last")
        complete = "the run is complete, nothing was trained" in result.stderr
        extra = os.path.isdir(os.path.join(out, "checkpoint-13"))
        return ("status 0; says the run is complete; no checkpoint-13",
                f"status {result.returncode}; {'says complete' if complete else 'says nothing'}; "
                f"{'checkpoint-13 written' if extra else 'no checkpoint-13'}",
                result.returncode == 0 and complete and not extra)

    def two_runs_in_one_folder(self):
        """A second run started into a folder that a live run holds."""
        out = self.folder("two-runs")
        with hold_output_dir(out, True, bool):
            result = hf_tst_train(out)
        line = error_line(result)
        return ("refused, one line naming the holder", line[:110] + "...",
                result.returncode == 2 and f'"pid": {os.getpid()}' in line)

    def requeued_before_any_save(self):
        """A job requeued before its first save: --resume_from_checkpoint auto in an empty folder."""
        out = self.folder("requeued")
        result = hf_tst_train(out, "--resume_from_checkpoint", "auto")
        same = result.returncode == 0 and losses(out) == self.uninterrupted()
        return ("starts afresh: the uninterrupted losses", f"status {result.returncode}; "
                f"{'the uninterrupted losses' if same else error_line(result)}", same)

    def workers_shards_processes(self):
        """2 processes (--num_processes 2, no launch config), 2 workers each, a stream of 2 shards (files)."""
        out = self.folder("shards")
        result = hf_tst_train(out, "--num_processes", "2", "--streaming", "true", "--dataloader_num_workers", "2",
                              "--train_files", "recipes/data/python-docs/validation.jsonl.gz",
                              "recipes/data/python-docs/train.jsonl.gz")
        line = error_line(result) + " " + " ".join(re.findall(r"dataloader_num_workers=2: [^\n]*", result.stderr))
        refused = "process 1's part of the train_dataset (2 processes) has 1 shard(s)" in line
        return ("refused before any step, naming each process's part (2 processes run)",
                quote(line, "process 1's part"),
                result.returncode != 0 and refused)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [name for name in vars(Cases) if not name.startswith("_") and callable(getattr(Cases, name))
             and getattr(Cases, name).__doc__ and name not in ("folder", "uninterrupted", "resumed_matches")]
    parser.add_argument("--cases", nargs="+", choices=names, default=names)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "faults-cpu.md"))
    cli = parser.parse_args()
    rows, started = [], time.time()
    with tempfile.TemporaryDirectory() as scratch:
        cases = Cases(scratch)
        for name in cli.cases:
            expected, observed, ok = getattr(cases, name)()
            rows.append([" ".join(getattr(Cases, name).__doc__.split()), expected, observed,
                         "ok" if ok else "FAILED"])
            print(f"{name}: {rows[-1][-1]} ({observed})", flush=True)
    failed = sum(row[-1] != "ok" for row in rows)
    table = markdown_table(["case", "expected", "observed", "verdict"], rows)
    publish(f"# Faults injected into `hf-tst train` (tiny, CPU)\n\n{table}\n\n{len(rows) - failed} of {len(rows)} "
            f"cases ok, {failed} failed, in {time.time() - started:.0f} s.", cli.out)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

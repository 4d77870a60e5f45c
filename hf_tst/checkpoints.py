"""Whole checkpoints only: a checkpoint counts once every file that resuming reads is written, and never before.

`TSTTrainer` writes a checkpoint's files as `Trainer` does (weights, optimizer, scheduler, RNG states, the
data position, `trainer_state.json`), waits for every process, and only then writes `COMPLETE`: the path
and size of every file in the folder, written to a temporary name, synced and renamed into place, so it
exists whole or not at all. A folder without it is an interrupted save (a kill, a full disk); a file whose
size differs from its record is torn. Neither is ever resumed:

- `resume_from_checkpoint=True`/`"last"` takes the newest checkpoint that verifies (`checkpoint_problem`);
- a checkpoint named explicitly that does not verify is refused, naming the file and what is wrong with it;
- a checkpoint without optimizer or scheduler state (`save_only_model`) is refused unless the run says
  `tst_resume_without_optimizer=True`: `Trainer` would silently restart AdamW's moments and the warm-up.

Older checkpoints are rotated away (`save_total_limit`) only after the new one's record is written.
"""

import json
import os
import re

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .errors import UsageError

COMPLETE = "tst_checkpoint.json"  # the completeness record, written last
TRAINER_STATE = "trainer_state.json"
NEWEST = (True, "last", "true", "True")  # the values of resume_from_checkpoint that mean "the newest complete one"
IF_ANY = "auto"  # resume_from_checkpoint: the newest complete checkpoint, or a fresh start when there is none
# Optimizer state as Trainer, FSDP and DeepSpeed save it; the scheduler's (DeepSpeed may keep it in its own folder).
OPTIMIZER_STATE = re.compile(r"^(optimizer\.(pt|bin)|optimizer_\d+/.*|global_step\d+/.*)$")
SCHEDULER_STATE = re.compile(r"^(scheduler\.pt|global_step\d+/.*)$")


def mark_complete(folder: str, step: int) -> None:
    """Record `folder` as a whole checkpoint of `step`: sync each of its files and take its size from the open file
    (what this process's file system holds now, not a cached size of a file another node wrote), then write
    `COMPLETE` under a name of this process's and rename it into place. Leftover records are not files of the
    checkpoint."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            relative = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if not relative.startswith(COMPLETE):
                with open(os.path.join(root, name), "rb") as f:
                    os.fsync(f.fileno())
                    files[relative] = os.fstat(f.fileno()).st_size
    temporary = os.path.join(folder, f"{COMPLETE}.{os.getpid()}.tmp")
    with open(temporary, "w") as f:
        json.dump({"step": step, "files": files}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, os.path.join(folder, COMPLETE))
    descriptor = os.open(folder, os.O_RDONLY)  # the rename itself survives a crash once the folder is synced
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def unmark(folder: str) -> None:
    """Withdraw `folder`'s completeness record, before its files are written again."""
    if os.path.isfile(os.path.join(folder, COMPLETE)):
        os.remove(os.path.join(folder, COMPLETE))


def checkpoint_problem(folder: str, require_optimizer: bool = True) -> str | None:
    """Why `folder` cannot be resumed (missing, interrupted, torn, or without optimizer state when it is
    required), in words naming the file; None for a whole checkpoint."""
    if not os.path.isdir(folder):
        return "no such folder"
    record = os.path.join(folder, COMPLETE)
    if not os.path.isfile(record):
        return (f"it has no {COMPLETE}, the record hf_tst writes after every other file of a checkpoint: its save "
                "was interrupted (a kill, a full disk), or a plain Trainer or an hf_tst without the record wrote it "
                "(if you know it is whole, record it: python -c \"from hf_tst.checkpoints import mark_complete; "
                f"mark_complete('{folder}', STEP)\")")
    try:
        with open(record) as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"its {COMPLETE} is unreadable ({type(error).__name__}: {error})"
    for name, size in sorted(files.items()):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{name} is missing"
        if os.path.getsize(path) != size:
            return f"{name} is torn: {os.path.getsize(path)} bytes, saved as {size}"
    if require_optimizer:
        for state, pattern in (("optimizer", OPTIMIZER_STATE), ("scheduler", SCHEDULER_STATE)):
            if not any(pattern.match(name) for name in files):
                return (f"it holds no {state} state (saved with save_only_model?): resuming would restart "
                        "AdamW's moments and the learning-rate schedule from zero; resume from a checkpoint that "
                        "has it, or set tst_resume_without_optimizer=True to resume the weights only")
    return None


def checkpoints_by_step(output_dir: str) -> list[tuple[int, str]]:
    """(step, folder) of every `checkpoint-N` folder in `output_dir`, newest first."""
    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    names = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    return sorted(((int(m.group(1)), os.path.join(output_dir, name)) for name in names
                   if (m := pattern.match(name))), reverse=True)


def newest_complete_checkpoint(output_dir: str, require_optimizer: bool = True) -> str | None:
    """The whole checkpoint of `output_dir` with the most steps, or None."""
    return next((folder for _, folder in checkpoints_by_step(output_dir)
                 if checkpoint_problem(folder, require_optimizer) is None), None)


def resolve_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str,
                       require_optimizer: bool = True) -> str | None:
    """The checkpoint folder to resume from: the given one, the newest whole one in `output_dir` with `True` or
    `"last"`, or with `"auto"` that one, or a fresh start when no save in `output_dir` got as far as its trainer
    state (a requeued job that had not saved yet, or was killed in its first save; checkpoints that are whole but
    unusable, such as weights-only ones, are refused rather than trained over). Refuses, by name, a folder that
    is not a whole checkpoint, and `last` in a folder that holds none."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint in (*NEWEST, IF_ANY):
        newest = newest_complete_checkpoint(output_dir, require_optimizer)
        found = [folder for _, folder in checkpoints_by_step(output_dir)]
        saved = any(os.path.isfile(os.path.join(folder, TRAINER_STATE)) for folder in found)
        if newest is None and (saved or resume_from_checkpoint != IF_ANY):
            why = f"; the newest, {found[0]}, is not: {checkpoint_problem(found[0], require_optimizer)}" if found \
                else ""
            raise UsageError(f"resume_from_checkpoint={resume_from_checkpoint!r}, but {output_dir} holds no complete "
                             f"checkpoint{why}; start without resume_from_checkpoint, pass "
                             f"resume_from_checkpoint={IF_ANY} to start fresh when there is none (requeued jobs), or "
                             "point it at a checkpoint folder.")
        return newest
    problem = checkpoint_problem(resume_from_checkpoint, require_optimizer)
    if problem is not None:
        raise UsageError(f"resume_from_checkpoint={resume_from_checkpoint!r} is not a complete checkpoint: {problem}. "
                         "Resume from an earlier checkpoint, or pass resume_from_checkpoint=last to take the newest "
                         "complete one.")
    return resume_from_checkpoint


def unusable_checkpoints_after(output_dir: str, step: int) -> dict[str, str]:
    """The checkpoint folders past `step` that are not whole (interrupted or torn saves), with why: left there,
    a save rotating checkpoints by step number would keep them and delete whole ones."""
    return {folder: problem for number, folder in checkpoints_by_step(output_dir)
            if number > step and (problem := checkpoint_problem(folder, require_optimizer=False)) is not None}

"""Resuming a TST run safely.

Where the phase switch falls and which data rows a resumed run skips both follow from a few
settings. A checkpoint records them (in `trainer_state.json`, written last, so a checkpoint that
has them is complete), and a run that resumes with other values is refused unless the user
explicitly allows it.
"""

import json
import os
import re

from torch.utils.data import IterableDataset
from transformers import TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .data import DATA_STATE
from .switch import PhaseSwitchCallback

TRAINER_STATE = "trainer_state.json"
NEWEST = (True, "last", "true", "True")  # the values of resume_from_checkpoint that mean "the newest complete one"


def checkpoint_is_complete(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, TRAINER_STATE))


def newest_complete_checkpoint(output_dir: str) -> str | None:
    """The complete checkpoint folder of `output_dir` with the most steps, or None."""
    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    found = sorted(((int(m.group(1)), name) for name in os.listdir(output_dir)
                    if (m := pattern.match(name))), reverse=True) if os.path.isdir(output_dir) else []
    return next((os.path.join(output_dir, name) for _, name in found
                 if checkpoint_is_complete(os.path.join(output_dir, name))), None)


def resolve_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str) -> str | None:
    """The checkpoint folder to resume from: the given one, or with `True` or `"last"` the newest complete
    one in `output_dir`. A folder whose save was interrupted (no trainer state) is refused by name."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint in NEWEST:
        newest = newest_complete_checkpoint(output_dir)
        if newest is None:
            raise ValueError(f"resume_from_checkpoint={resume_from_checkpoint!r}, but {output_dir} holds no complete "
                             "checkpoint; start without resume_from_checkpoint or point it at a checkpoint folder.")
        return newest
    if not checkpoint_is_complete(resume_from_checkpoint):
        raise ValueError(f"resume_from_checkpoint={resume_from_checkpoint!r} is not a complete checkpoint (no "
                         f"{TRAINER_STATE}: the save was interrupted, or the path is wrong); resume from an earlier "
                         "checkpoint, or pass resume_from_checkpoint=True to take the newest complete one.")
    return resume_from_checkpoint


def run_settings(args, rows_per_step: int, dataset) -> dict:
    """The settings of a run that place the phase switch and decide which block each row reads: rows per
    step, seed, sampling order, dataset length and a stream's readers (processes, workers) always; with a
    superposition phase also the bag size, `max_steps`, superpose mode, fold and contiguous rows. Without
    one `max_steps` is left out: a plain run may be extended or branched into a shorter decay (as the
    budget ladder does) like any `Trainer` run."""
    streamed = isinstance(dataset, IterableDataset)
    settings = {"tst_ratio": args.tst_ratio, "rows_per_step": rows_per_step,
                "dataset_rows": None if dataset is None or streamed else len(dataset),
                "data_seed": args.data_seed if args.data_seed is not None else args.seed,
                "train_sampling_strategy": args.train_sampling_strategy,
                # which shards feed which rows of a stream: its readers, processes x DataLoader workers
                "stream_readers": [args.world_size, args.dataloader_num_workers] if streamed else None}
    if args.superposition_steps:
        settings.update(tst_bag_size=args.tst_bag_size, tst_superpose=args.tst_superpose, tst_fold=args.tst_fold,
                        max_steps=args.max_steps,
                        tst_contiguous_rows=args.tst_contiguous_rows and args.tst_fold == "sequence")
    return settings


def check_resume_settings(checkpoint: str, current: dict, allow_changes: bool) -> None:
    """Refuse to resume `checkpoint` under TST settings other than those it was saved with."""
    state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE))
    saved = (state.stateful_callbacks or {}).get(PhaseSwitchCallback.__name__, {}).get("args")
    if saved is None:
        changes = "it records no TST settings (written by a plain Trainer or an older hf_tst)"
    else:
        changes = ", ".join(f"{key} {saved.get(key, 'unrecorded')!r} -> {value!r}" for key, value in current.items()
                            if saved.get(key, "unrecorded") != value)
    if changes and not allow_changes:
        raise ValueError(f"cannot resume from {checkpoint}: {changes}. The phase switch and the data position "
                         "depend on these settings; resume with the original ones, or set "
                         "tst_allow_changed_settings=True to resume anyway (data order then follows the new settings).")


def save_data_state(checkpoint: str, state: dict | None, process_index: int) -> None:
    """Write a process's data stream position into `checkpoint` (made if missing), before the trainer state
    that completes the checkpoint; nothing when the position is unknown (the resumed run then replays the
    stream)."""
    if state is not None:
        os.makedirs(checkpoint, exist_ok=True)
        with open(os.path.join(checkpoint, DATA_STATE.format(process_index)), "w") as f:
            json.dump(state, f)


def load_data_state(checkpoint: str | None, process_index: int) -> dict | None:
    """A process's data stream position saved in `checkpoint`, or None."""
    path = os.path.join(checkpoint, DATA_STATE.format(process_index)) if checkpoint else None
    if path is None or not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)

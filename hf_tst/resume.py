"""Resuming a TST run safely.

Where the phase switch falls and which data rows a resumed run skips both follow from a few
settings. A checkpoint records them (in `trainer_state.json`, written last, so a checkpoint that
has them is complete), and a run that resumes with other values is refused unless the user
explicitly allows it.
"""

import os
import re

from transformers import TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

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

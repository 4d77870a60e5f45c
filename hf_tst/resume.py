"""Resuming a TST run safely.

Where the phase switch falls and which data rows a resumed run skips both follow from a few
settings. A checkpoint records them (in `trainer_state.json`), and a run that resumes with other
values is refused unless the user explicitly allows it. Which checkpoints may be resumed at all is
`hf_tst.checkpoints`'.
"""

import json
import os
import shutil
from collections.abc import Callable

from torch.utils.data import IterableDataset
from transformers import TrainerState
from transformers.trainer_utils import TrainOutput, rotate_checkpoints
from transformers.utils import logging

from .checkpoints import (
    TRAINER_STATE,
    mark_complete,
    newest_complete_checkpoint,
    resolve_checkpoint,
    unmark,
    unusable_checkpoints_after,
)
from .data import DATA_STATE, PhasedBlockStream
from .errors import UsageError
from .switch import PhaseSwitchCallback

logger = logging.get_logger(__name__)


class CheckpointSaveError(OSError):
    """A checkpoint could not be written whole (a full disk, a failing file system): the run stops."""


def resume_point(trainer, resume_from_checkpoint: str | bool | None) -> tuple[str, int] | None:
    """(checkpoint, its step) where `trainer` resumes, or None for a fresh start: the checkpoint resolved as
    `checkpoints.resolve_checkpoint` does and checked against the run's settings. On the main process,
    folders past it that are not whole checkpoints (interrupted saves) are deleted, with a warning: they
    would never be resumed, and checkpoint rotation, which goes by step number, would keep them instead of
    whole ones. Only this run's own `output_dir` is cleaned: a checkpoint of another run (a branch) is not ours."""
    args = trainer.args
    checkpoint = resolve_checkpoint(resume_from_checkpoint, args.output_dir,
                                    require_optimizer=not args.tst_resume_without_optimizer)
    if checkpoint is None:
        return None
    check_resume_settings(checkpoint, trainer.run_settings(), args.tst_allow_changed_settings)
    step = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE)).global_step
    if trainer.is_world_process_zero() and os.path.realpath(os.path.dirname(checkpoint)) == os.path.realpath(
            args.output_dir):
        for folder, problem in unusable_checkpoints_after(args.output_dir, step).items():
            logger.warning(f"deleting {folder}, which is not a whole checkpoint ({problem}): the resumed run saves "
                           "its steps again.")
            shutil.rmtree(folder, ignore_errors=True)
    return checkpoint, step


def finished_run_output(trainer, checkpoint: str) -> TrainOutput:
    """What `train()` returns when `checkpoint` already holds the run's last step: the model and state loaded from
    it, nothing trained (a requeued job whose run had finished must not train past `max_steps`). Under DeepSpeed
    or FSDP the weights load only once training has set them up, so such a run is refused instead."""
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        raise UsageError(f"{checkpoint} is at the run's last step (max_steps={trainer.args.max_steps}): the run is "
                         "complete, and under DeepSpeed or FSDP its weights cannot be loaded without training; use "
                         "that checkpoint as it is, or raise max_steps to train on.")
    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE))
    logger.warning(f"{checkpoint} is at step {trainer.state.global_step} of max_steps={trainer.args.max_steps}: the "
                   "run is complete, nothing was trained. Raise max_steps to train on.")
    loss = next((log["train_loss"] for log in reversed(trainer.state.log_history) if "train_loss" in log), float("nan"))
    return TrainOutput(trainer.state.global_step, loss, {})


def place_stream(stream: PhasedBlockStream, resumed: tuple[str, int] | None, args, any_process) -> bool:
    """Start a resumed run's `stream` at the row of its step, on every process or on none (`any_process` reduces a
    flag over them), and say whether it was placed. Map-style data is placed from the step alone; a stream needs
    the position its checkpoint saved, and without one Trainer replays it, which `ignore_data_skip` forbids."""
    if resumed is None:
        return False
    checkpoint, step = resumed
    position = stream.state_dict(step) if stream.is_map_style else load_data_state(
        checkpoint, args.process_index if stream.per_process else 0)
    if any_process(position is None):
        if args.ignore_data_skip:
            raise UsageError(f"ignore_data_skip=True, but {checkpoint} holds no position of the streamed "
                             "train_dataset (a stream read by DataLoader workers saves none), so the stream can only "
                             "be replayed to its step, which ignore_data_skip forbids (started at its beginning, every "
                             "step would read the wrong phase's rows); resume without ignore_data_skip.")
        return False
    stream.load_state_dict(position)
    return True


def save_checkpoint_whole(trainer, folder: str, save: Callable[[], None]) -> None:
    """Write a checkpoint so that it counts only once whole: the data stream's position and then `save()`
    (Trainer's files), every process done, then the completeness record (`checkpoints.mark_complete`); older
    checkpoints are rotated away (`save_total_limit`) only after that. A save that fails on any process stops
    the run on every process (none is left waiting for it) with a `CheckpointSaveError` naming the folder, the
    cause and the newest whole checkpoint."""
    args, stream, step = trainer.args, trainer._block_stream, trainer.state.global_step
    limit, args.save_total_limit = args.save_total_limit, None  # Trainer would rotate before the record exists
    failure = None
    try:
        if args.should_save:  # a folder saved again (a resumed run's step) is not whole until its new record
            unmark(folder)
        if stream is not None and (stream.per_process or trainer.is_world_process_zero()):
            save_data_state(folder, stream.state_dict(step), args.process_index)
        save()
    except Exception as error:  # noqa: BLE001 - raised below, on every process, once they have agreed
        failure = error
    finally:
        args.save_total_limit = limit
    if not trainer._any_process(failure is not None) and args.should_save:  # every process has written its files
        try:
            mark_complete(folder, step)
        except OSError as error:
            failure = error
    if trainer._any_process(failure is not None):
        if failure is None:
            cause = "another process could not write its part"
        elif isinstance(failure, OSError) and failure.strerror:
            cause = failure.strerror
        else:
            cause = f"{type(failure).__name__}: {failure}"
        newest = newest_complete_checkpoint(os.path.dirname(folder), not args.tst_resume_without_optimizer)
        raise CheckpointSaveError(
            f"could not save the checkpoint of step {step} to {folder} ({cause}); that folder will never be resumed. "
            f"Newest complete checkpoint: {newest or 'none'}; fix the cause (free disk space) and resume with "
            "--resume_from_checkpoint last.") from failure
    if args.should_save:
        rotate_checkpoints(os.path.dirname(folder), limit, trainer.state.best_model_checkpoint, use_mtime=True)


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
        raise UsageError(f"cannot resume from {checkpoint}: {changes}. The phase switch and the data position "
                         "depend on these settings; resume with the original ones, or set "
                         "tst_allow_changed_settings=True to resume anyway (data order then follows the new settings).")


def save_data_state(checkpoint: str, state: dict | None, process_index: int) -> None:
    """Write a process's data stream position into `checkpoint` (made if missing), before Trainer's files and the
    completeness record; nothing when the position is unknown (the resumed run then replays the stream)."""
    if state is not None:
        os.makedirs(checkpoint, exist_ok=True)
        with open(os.path.join(checkpoint, DATA_STATE.format(process_index)), "w") as f:
            json.dump(state, f)


def load_data_state(checkpoint: str | None, process_index: int) -> dict | None:
    """A process's data stream position saved in `checkpoint`, or None."""
    path = os.path.join(checkpoint, DATA_STATE.format(process_index)) if checkpoint else None
    if path is None or not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as error:
        raise UsageError(f"{path} is unreadable ({error}): the data position of this checkpoint is damaged; resume "
                         f"from another checkpoint, or delete {os.path.basename(path)} to replay the stream up to the "
                         "checkpoint's step instead.") from None

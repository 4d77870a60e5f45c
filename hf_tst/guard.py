"""The non-finite guard: a NaN or infinite training loss never trains and never saves.

The guard sees every micro-batch's loss after its forward and, on the optimizer step's last
micro-batch, before its backward (DeepSpeed steps the optimizer inside backward), decides for
the whole step, alike on every process (one flag reduced over processes, one device sync per step):

- stop: a `FloatingPointError` names the step, its phase and the newest complete checkpoint,
  so nothing after the last good step is trained or saved;
- or, with `tst_skip_nonfinite_steps=True`, mark the step: the trainer then drops its gradients
  (`drop_step_gradients`), and the optimizer leaves every parameter and its moments as they were.

A loss holding several values (a subclass's per-device or per-token losses) is non-finite when any entry is.
"""

from collections.abc import Callable

import torch

from .checkpoints import newest_complete_checkpoint
from .phase import phase_name


class NonFiniteGuard:
    """Watches the losses of each optimizer step of a run with `args` (a `TSTConfig`: whether to skip, the phase
    switch, the checkpoints to name). `any_process(flag)` reduces a 0-d bool tensor over the processes and
    returns whether any process set it (every process must call it)."""

    def __init__(self, args, any_process: Callable[[torch.Tensor], bool]):
        self.args = args
        self.any_process = any_process
        self.skipped_steps = 0
        self._seen = None  # whether the current step has seen a non-finite loss (a device tensor)
        self._skip_pending = False

    def check(self, loss: torch.Tensor, end_of_step: bool, step: int) -> None:
        """Take a micro-batch's loss; at the end of optimizer step `step` (1-based), stop the run or
        mark the step to skip when any of the step's losses, on any process, was not finite."""
        nonfinite = ~torch.isfinite(loss.detach()).all()
        self._seen = nonfinite if self._seen is None else self._seen | nonfinite
        if not end_of_step:
            return
        seen, self._seen = self._seen, None
        if not self.any_process(seen):
            return
        if self.args.tst_skip_nonfinite_steps:
            self._skip_pending = True
            return
        checkpoint = newest_complete_checkpoint(self.args.output_dir, not self.args.tst_resume_without_optimizer)
        phase = phase_name(step, self.args.superposition_steps)
        raise FloatingPointError(
            f"non-finite training loss at step {step} ({phase} phase); the run stopped before that step's "
            f"optimizer update, so nothing after step {step - 1} was trained or saved. Last complete checkpoint: "
            f"{checkpoint or 'none'}. Resume from it (--resume_from_checkpoint last) with a lower learning_rate or "
            "stronger max_grad_norm, or set tst_skip_nonfinite_steps=True to skip such steps.")

    def take_skip(self) -> bool:
        """Whether the step just run is to be skipped; counts it, once."""
        skip, self._skip_pending = self._skip_pending, False
        self.skipped_steps += skip
        return skip


def drop_step_gradients(model: torch.nn.Module, under_grad_scaler: bool) -> None:
    """Make the optimizer step that follows change nothing. Without a GradScaler the gradients are dropped: the
    optimizer leaves parameters without one, and their moments, as they are. Under a GradScaler (fp16) they are
    made NaN instead: the scaler then skips the step by its own rule (it refuses to step an optimizer whose
    gradients it never checked) and lowers its scale, as for any overflow."""
    if not under_grad_scaler:
        model.zero_grad(set_to_none=True)
        return
    for parameter in model.parameters():
        if parameter.grad is not None:
            parameter.grad.fill_(float("nan"))

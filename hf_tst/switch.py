"""Watching the phase switch: where the superposition phase left the model, and what recovery cost.

At the switch the objective changes from the multi-hot loss on bags to next-token cross-entropy on
single tokens, so the training-loss curve jumps there by design. Three figures say what happened,
all in next-token loss on training batches (nats per token), logged with the training logs:

- `tst_switch_loss_before`: the loss of the first recovery step. Its forward runs before that
  step's update, so it is the next-token loss of the model exactly as the superposition phase
  left it.
- `tst_switch_loss_after`: the loss of the second recovery step, after one recovery update.
- `tst_recovery_steps`: the recovery updates until the running loss (the mean of the last
  `window` step losses) is back below `tst_switch_loss_before`: what the switch cost. A run that
  ends first never logs it.

Watching costs one scalar read of the step loss per step, from the switch until recovery (the
Trainer's NaN filter already reads it every step). A run resumed after the switch does not watch.
"""

from collections.abc import Callable

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


class SwitchWatch:
    """Collects the loss of each recovery step from the switch on, until the running loss recovers.

    `reduce` turns a step's summed micro-batch losses into the float the Trainer would log (under
    data parallelism, the mean over processes; every process must call it, as every process runs
    the same steps)."""

    def __init__(self, switch_step: int, micro_batches_per_step: int, reduce: Callable[[torch.Tensor], float],
                 window: int = 10):
        self.switch_step = switch_step
        self.micro_batches_per_step = micro_batches_per_step
        self.reduce = reduce
        self.window = window
        self.step_losses: list[float] = []
        self.recovery_steps: int | None = None
        self._micro_batch_losses: list[torch.Tensor] = []
        self._unlogged: dict[str, float] = {}

    def watches(self, global_step: int) -> bool:
        """Whether the step that follows `global_step` completed steps is watched."""
        started = bool(self.step_losses or self._micro_batch_losses)
        return (self.switch_step > 0 and self.recovery_steps is None
                and (global_step == self.switch_step or (started and global_step > self.switch_step)))

    def add_micro_batch(self, loss: torch.Tensor) -> None:
        self._micro_batch_losses.append(loss.detach())
        if len(self._micro_batch_losses) == self.micro_batches_per_step:
            self._add_step(self.reduce(torch.stack(self._micro_batch_losses).sum()))
            self._micro_batch_losses = []

    def _add_step(self, loss: float) -> None:
        self.step_losses.append(loss)
        before = self.step_losses[0]
        if len(self.step_losses) == 1:
            self._unlogged["tst_switch_loss_before"] = loss
            return
        if len(self.step_losses) == 2:
            self._unlogged["tst_switch_loss_after"] = loss
        recent = self.step_losses[-self.window:]
        if sum(recent) / len(recent) < before:
            self.recovery_steps = len(self.step_losses) - 1
            self._unlogged["tst_recovery_steps"] = self.recovery_steps

    def pop_unlogged(self) -> dict[str, float]:
        """The figures measured since the last call, for the next training log."""
        figures, self._unlogged = self._unlogged, {}
        return figures


def switch_figures(log_history: list[dict]) -> dict[str, float]:
    """The switch figures a run logged (`tst_switch_loss_before`, `..._after`, `tst_recovery_steps`)."""
    keys = ("tst_switch_loss_before", "tst_switch_loss_after", "tst_recovery_steps")
    return {key: log[key] for log in log_history for key in keys if key in log}


def describe_switch(figures: dict[str, float], switch_step: int) -> str:
    """One sentence on the switch from a run's `switch_figures`, for model cards and reports."""
    if "tst_switch_loss_before" not in figures:
        return f"The switch (step {switch_step}) was not watched (the run was resumed after it, or ended there)."
    text = (f"At the switch (step {switch_step}) the next-token training loss of the superposed model was "
            f"{figures['tst_switch_loss_before']:.4f}")
    if "tst_switch_loss_after" in figures:
        text += f", and {figures['tst_switch_loss_after']:.4f} after the first recovery step"
    if "tst_recovery_steps" in figures:
        steps = figures["tst_recovery_steps"]
        return text + (f"; the running loss was back below its value at the switch after {steps} recovery "
                       f"step{'' if steps == 1 else 's'}.")
    return text + "; the running loss did not get back below its value at the switch before the run ended."


class PhaseSwitchCallback(TrainerCallback, ExportableState):
    """Ends a logging window at the switch, so no logged loss mixes MCE with plain cross-entropy,
    and evaluates and saves there when the run evaluates or saves at all: the phase-1 checkpoint
    is the one the paper resumed from. Its saved state (`TrainerState.stateful_callbacks`, under
    this class's name) records the settings that place the switch and the data position, which
    `hf_tst.resume.check_resume_settings` compares on resume."""

    def __init__(self, **settings):
        self.settings = settings

    def state(self) -> dict:
        return {"args": self.settings, "attributes": {}}

    def on_step_end(self, args, state, control, **kwargs):
        if args.superposition_steps and state.global_step == args.superposition_steps:
            control.should_log = True
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = args.save_strategy != "no"
        return control

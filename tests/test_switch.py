"""The switch figures against the per-step losses the Trainer itself logged (logging every step)."""

import pytest
import torch
from conftest import packed_dataset, tiny_llama

from hf_tst import TSTTrainer
from hf_tst.switch import SwitchWatch, describe_switch, switch_figures


def recovery_after(losses: list[float], window: int) -> int | None:
    """By hand: updates until the mean of the last `window` losses falls below the first."""
    for k in range(2, len(losses) + 1):
        recent = losses[max(0, k - window):k]
        if sum(recent) / len(recent) < losses[0]:
            return k - 1
    return None


@pytest.mark.parametrize("accumulation", [1, 2])
def test_switch_figures_are_the_logged_losses_of_the_first_recovery_steps(make_config, accumulation):
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(200, 12, 97),
                         args=make_config(max_steps=24, tst_ratio=0.25, tst_bag_size=3, learning_rate=3e-2,
                                          gradient_accumulation_steps=accumulation))
    trainer.train()
    losses = {log["step"]: log["loss"] for log in trainer.state.log_history if "loss" in log}
    recovery = [losses[step] for step in range(7, 25)]
    figures = switch_figures(trainer.state.log_history)
    assert figures["tst_switch_loss_before"] == pytest.approx(recovery[0], rel=1e-6)
    assert figures["tst_switch_loss_after"] == pytest.approx(recovery[1], rel=1e-6)
    expected = recovery_after(recovery, window=10)
    assert figures.get("tst_recovery_steps") == expected
    assert describe_switch(figures, 6).startswith(
        f"At the switch (step 6) the next-token training loss of the superposed model was {recovery[0]:.4f}")


def test_recovery_waits_for_the_running_loss_after_a_spike():
    """A spike after the switch: the trailing mean of 3 gets back below 5.0 only at the sixth loss."""
    watch = SwitchWatch(switch_step=10, micro_batches_per_step=1, reduce=float, window=3)
    for loss in [5.0, 6.0, 5.5, 5.25, 4.875, 4.5, 4.0]:  # exact in float32
        if watch.watches(10 + len(watch.step_losses)):
            watch.add_micro_batch(torch.tensor(loss))
    assert watch.recovery_steps == 5 == recovery_after([5.0, 6.0, 5.5, 5.25, 4.875, 4.5], window=3)
    assert watch.step_losses == [5.0, 6.0, 5.5, 5.25, 4.875, 4.5]  # watching stops once recovered
    assert watch.pop_unlogged() == {"tst_switch_loss_before": 5.0, "tst_switch_loss_after": 6.0,
                                     "tst_recovery_steps": 5}


def test_a_run_without_superposition_does_not_watch(make_config):
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, 12, 97),
                         args=make_config(max_steps=4, tst_ratio=0.0))
    trainer.train()
    assert switch_figures(trainer.state.log_history) == {}

"""A NaN or infinite training loss stops the run before that step's update, naming the step, its phase and
the last complete checkpoint; or, opted in, the step is skipped: no parameter moves, and the logs count it."""

import os

import pytest
import torch
from conftest import packed_dataset, tiny_llama
from transformers import TrainerCallback

from hf_tst import TSTTrainer


class PoisonedTrainer(TSTTrainer):
    """A TSTTrainer whose loss is NaN on the first micro-batch of optimizer step `poisoned_step` (of two)."""

    poisoned_step = 4

    def _compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super()._compute_loss(model, inputs, return_outputs, num_items_in_batch)
        first_micro_batch = not self.accelerator.sync_gradients
        return loss * float("nan") if self.state.global_step + 1 == self.poisoned_step and first_micro_batch else loss


class ParameterSnapshots(TrainerCallback):
    """The LM head's weight after every optimizer step."""

    def __init__(self):
        self.after_step = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after_step[state.global_step] = model.get_output_embeddings().weight.detach().clone()


def run(make_config, **overrides):
    snapshots = ParameterSnapshots()
    trainer = PoisonedTrainer(model=tiny_llama(), train_dataset=packed_dataset(128, 16, 97), callbacks=[snapshots],
                              args=make_config(max_steps=6, tst_ratio=0.5, tst_bag_size=4, save_strategy="steps",
                                               save_steps=2, gradient_accumulation_steps=2, **overrides))
    return trainer, snapshots


def test_a_non_finite_loss_stops_the_run_before_its_update_naming_step_phase_and_checkpoint(tmp_path, make_config):
    trainer, snapshots = run(make_config)
    with pytest.raises(FloatingPointError, match=r"at step 4 \(recovery phase\).*nothing after step 3 was "
                                                 r"trained or saved. Last complete checkpoint: .*checkpoint-3"):
        trainer.train()
    assert sorted(snapshots.after_step) == [1, 2, 3]  # step 4 never updated the parameters
    assert sorted(name for name in os.listdir(tmp_path) if name.startswith("checkpoint-")) == [
        "checkpoint-2", "checkpoint-3"]  # every 2 steps, and the switch (3); nothing after the bad step
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_an_opted_in_skip_leaves_the_parameters_of_the_bad_step_unchanged_and_counts_it(make_config):
    trainer, snapshots = run(make_config, tst_skip_nonfinite_steps=True)
    trainer.train()
    assert torch.equal(snapshots.after_step[4], snapshots.after_step[3])  # the skipped step moved nothing
    assert not torch.equal(snapshots.after_step[5], snapshots.after_step[4])  # the next one trains again
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert [log["tst_skipped_steps"] for log in logs] == [0, 0, 0, 1, 1, 1]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())

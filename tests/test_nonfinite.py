"""A NaN or infinite training loss stops the run before that step's update, naming the step, its phase and
the last complete checkpoint; or, opted in, the step is skipped: no parameter moves, and the logs count it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, packed_dataset, tiny_llama
from transformers import TrainerCallback

from hf_tst import TSTTrainer
from hf_tst.guard import NonFiniteGuard


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


def test_a_loss_vector_is_reduced_before_the_check(tmp_path, make_config):
    """A loss of several values (per device, per token): one NaN among them stops (or skips) the step, and
    finite vectors pass; the flag crosses processes as one scalar."""
    seen = []

    def any_process(flag):
        seen.append(flag.shape)
        return bool(flag)

    args = make_config(max_steps=6, tst_ratio=0.5, output_dir=str(tmp_path))  # steps 1-3 superpose
    guard = NonFiniteGuard(args, any_process=any_process)
    guard.check(torch.tensor([1.0, 2.0]), end_of_step=False, step=5)
    guard.check(torch.tensor([3.0, 4.0]), end_of_step=True, step=5)
    guard.check(torch.tensor([1.0, float("nan")]), end_of_step=False, step=6)
    with pytest.raises(FloatingPointError, match=r"at step 6 \(recovery phase\).*Last complete checkpoint: none"):
        guard.check(torch.tensor([1.0, 2.0]), end_of_step=True, step=6)
    assert seen == [torch.Size([]), torch.Size([])]
    skipping = NonFiniteGuard(make_config(max_steps=6, tst_ratio=0.5, tst_skip_nonfinite_steps=True), any_process=bool)
    skipping.check(torch.tensor([float("inf"), 1.0]), end_of_step=True, step=2)
    assert skipping.take_skip() and not skipping.take_skip() and skipping.skipped_steps == 1


@pytest.mark.slow
def test_a_nan_on_one_of_two_processes_skips_the_step_on_both(tmp_path):
    """Two gloo processes, a NaN loss on rank 1 only in step 4: both skip it, so after step 4 every
    parameter and the optimizer's moments are those after step 3, on both processes, and step 5 trains."""
    result = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                             "recipes/accelerate/ddp.yaml", "--num_processes", "2", "--mixed_precision", "no",
                             "--dynamo_backend", "no", str(Path(__file__).with_name("run_nonfinite.py")),
                             str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    for snapshots in ranks:
        assert sorted(snapshots) == [3, 4, 5]
        for name, value in snapshots[3].items():
            assert torch.equal(snapshots[4][name], value), name
        assert not torch.equal(snapshots[5]["model.norm.weight"], snapshots[4]["model.norm.weight"])
        assert all(torch.isfinite(value).all() for value in snapshots[5].values())
    assert snapshots[4].keys() == ranks[0][4].keys() and len(snapshots[4]) > 40  # parameters and moments
    for name, value in ranks[0][5].items():
        torch.testing.assert_close(ranks[1][5][name], value)  # the processes stayed in step

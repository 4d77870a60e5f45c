"""A tiny two-phase run in which rank 1 alone has a NaN loss in step 4, with tst_skip_nonfinite_steps;
each rank saves every parameter and the optimizer's moments after steps 3, 4 and 5 to OUT/rank{R}.pt.

    accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2 tests/run_nonfinite.py OUT
"""

import os
import sys
import warnings

import torch
from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(__file__))
from conftest import config, packed_dataset, tiny_llama  # noqa: E402

from hf_tst import TSTTrainer  # noqa: E402

POISONED_STEP = 4


class PoisonedOnRankOne(TSTTrainer):
    def _compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super()._compute_loss(model, inputs, return_outputs, num_items_in_batch)
        poisoned = self.state.global_step + 1 == POISONED_STEP and self.accelerator.process_index == 1
        return loss * float("nan") if poisoned else loss


class Snapshots(TrainerCallback):
    """Parameters and AdamW moments (exp_avg, exp_avg_sq, step) after steps 3, 4 and 5."""

    def __init__(self):
        self.after_step = {}

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if state.global_step not in (3, 4, 5):
            return
        snapshot = {}
        for name, parameter in model.named_parameters():
            snapshot[name] = parameter.detach().clone()
            for moment, value in optimizer.state[parameter].items():
                snapshot[f"{name}/{moment}"] = value.detach().clone()
        self.after_step[state.global_step] = snapshot


def main():
    output_dir = sys.argv[1]
    warnings.simplefilter("ignore")
    snapshots = Snapshots()
    args = config(output_dir, max_steps=6, tst_ratio=0.5, tst_bag_size=3, per_device_train_batch_size=2,
                  gradient_accumulation_steps=2, tst_skip_nonfinite_steps=True)
    trainer = PoisonedOnRankOne(model=tiny_llama(), args=args, train_dataset=packed_dataset(96, 8, 97),
                                callbacks=[snapshots])
    trainer.train()
    torch.save(snapshots.after_step, os.path.join(output_dir, f"rank{trainer.accelerator.process_index}.pt"))
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main()

"""A tiny TST run in its own process(es), for the resume and preemption tests: it records the data of every
micro-batch (main process) and can SIGKILL itself mid-step or right after a checkpoint is saved, or send itself
SIGTERM mid-step (on one process rank only, and again while the checkpoint is written).

    [accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2] tests/run_tiny.py \
        OUTPUT_DIR RECORD_FILE [--kill_mid_step N | --kill_after_save N | --sigterm_mid_step N [--sigterm_rank R]
        [--sigterm_during_save]] [--resume] [--streaming]
"""

import argparse
import hashlib
import json
import os
import signal
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
from conftest import config, packed_dataset, tiny_llama  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from hf_tst import TSTTrainer  # noqa: E402


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfterSave(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            kill_self()


class RecordingTSTTrainer(TSTTrainer):
    record_file, kill_mid_step, sigterm_mid_step, sigterm_rank, sigterm_during_save = None, None, None, 0, False

    def training_step(self, model, inputs, num_items_in_batch=None):
        step = self.state.global_step + 1
        if self.is_world_process_zero():
            with open(self.record_file, "a") as f:
                digest = hashlib.sha1(inputs["input_ids"].numpy().tobytes()).hexdigest()
                f.write(json.dumps({"step": step, "data": digest}) + "\n")
        loss = super().training_step(model, inputs, num_items_in_batch)
        if step == self.kill_mid_step:
            kill_self()  # after the first micro-batch of the step: its gradient is lost
        if step == self.sigterm_mid_step and self.accelerator.process_index == self.sigterm_rank:
            self.sigterm_mid_step = None  # once, after the step's first micro-batch
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    def _save_checkpoint(self, model, trial):
        if self.sigterm_during_save and self.control.should_training_stop:  # the preemption's save
            os.kill(os.getpid(), signal.SIGTERM)
        super()._save_checkpoint(model, trial)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("record_file")
    parser.add_argument("--kill_mid_step", type=int)
    parser.add_argument("--kill_after_save", type=int)
    parser.add_argument("--sigterm_mid_step", type=int)
    parser.add_argument("--sigterm_rank", type=int, default=0)
    parser.add_argument("--sigterm_during_save", action="store_true")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--streaming", action="store_true")
    cli = parser.parse_args()
    warnings.simplefilter("ignore")
    data = packed_dataset(40, 8, 97)
    args = config(cli.output_dir, output_dir=cli.output_dir, max_steps=8, tst_ratio=0.5, tst_bag_size=3,
                  per_device_train_batch_size=2, gradient_accumulation_steps=2, save_strategy="steps", save_steps=2)
    trainer = RecordingTSTTrainer(model=tiny_llama(), args=args,
                                  train_dataset=data.to_iterable_dataset() if cli.streaming else data)
    trainer.record_file, trainer.kill_mid_step = cli.record_file, cli.kill_mid_step
    trainer.sigterm_mid_step, trainer.sigterm_rank = cli.sigterm_mid_step, cli.sigterm_rank
    trainer.sigterm_during_save = cli.sigterm_during_save
    if cli.kill_after_save:
        trainer.add_callback(KillAfterSave(cli.kill_after_save))
    trainer.train(resume_from_checkpoint=cli.resume or None)
    # Each logged step's loss and epoch: a resumed run must log both as the uninterrupted one does.
    logged = {log["step"]: [log["loss"], log["epoch"]] for log in trainer.state.log_history if "loss" in log}
    if trainer.is_world_process_zero():
        print(json.dumps(logged))


if __name__ == "__main__":
    main()

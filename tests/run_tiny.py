"""A tiny TST run in its own process, for the resume tests: it records the data of every micro-batch
and can SIGKILL itself mid-step or right after a checkpoint is saved.

    python tests/run_tiny.py OUTPUT_DIR RECORD_FILE [--kill_mid_step N | --kill_after_save N] [--resume] [--streaming]
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
    record_file, kill_mid_step = None, None

    def training_step(self, model, inputs, num_items_in_batch=None):
        step = self.state.global_step + 1
        with open(self.record_file, "a") as f:
            digest = hashlib.sha1(inputs["input_ids"].numpy().tobytes()).hexdigest()
            f.write(json.dumps({"step": step, "data": digest}) + "\n")
        loss = super().training_step(model, inputs, num_items_in_batch)
        if step == self.kill_mid_step:
            kill_self()  # after the first micro-batch of the step: its gradient is lost
        return loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("record_file")
    parser.add_argument("--kill_mid_step", type=int)
    parser.add_argument("--kill_after_save", type=int)
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
    if cli.kill_after_save:
        trainer.add_callback(KillAfterSave(cli.kill_after_save))
    trainer.train(resume_from_checkpoint=cli.resume or None)
    losses = {log["step"]: log["loss"] for log in trainer.state.log_history if "loss" in log}
    print(json.dumps(losses))


if __name__ == "__main__":
    main()

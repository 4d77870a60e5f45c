"""Resume benchmark: what resuming costs before the first new batch, at an early and a late checkpoint of
one run, with the saved data position (constant time) and without it (the Trainer replays the stream), side
by side in this one run, for map-style and streamed data.

A tiny model trains `--steps` steps (switch at half), saving at `--early` and `--late`; each resume counts
the blocks its data yields and the seconds from `train()` until the first new batch reaches a step.

    python benchmarks/resume.py [--steps 400 --early 40 --late 360]
"""

import argparse
import glob
import os
import sys
import tempfile
import time
import warnings

import datasets
import torch
from measure import markdown_table, publish

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from conftest import config, packed_dataset, tiny_llama  # noqa: E402

from hf_tst import TSTTrainer  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--early", type=int, default=40)
    parser.add_argument("--late", type=int, default=360)
    parser.add_argument("--output", help="also write the table (markdown) to this file")
    return parser.parse_args()


class FirstBatch(Exception):
    pass


class StopAtFirstBatch(TSTTrainer):
    def training_step(self, model, inputs, num_items_in_batch=None):
        raise FirstBatch()


class Counted:
    """Counts the blocks a dataset yields: a map-style wrapper, or a `map` in a stream's pipeline."""

    def __init__(self, blocks: datasets.Dataset, streamed: bool):
        self.blocks, self.source = 0, None if streamed else [dict(block) for block in blocks]
        self.data = blocks.to_iterable_dataset().map(self._count) if streamed else self

    def _count(self, block):
        self.blocks += 1
        return block

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        return self._count(self.source[index])


def main():
    args = parse_args()
    warnings.filterwarnings("ignore")
    blocks = packed_dataset(args.steps * 2 * 3, 8, 97)
    settings = dict(max_steps=args.steps, tst_ratio=0.5, tst_bag_size=3, per_device_train_batch_size=2,
                    save_strategy="steps", save_steps=args.early, logging_steps=args.steps)
    rows = []
    for streamed in (False, True):
        folder = tempfile.mkdtemp()
        TSTTrainer(model=tiny_llama(), args=config(folder, **settings),
                   train_dataset=Counted(blocks, streamed).data).train()
        for saved_position in (True, False):
            if not saved_position:
                for path in glob.glob(os.path.join(folder, "checkpoint-*", "tst_data_state-*.json")):
                    os.remove(path)
            for step in (args.early, args.late):
                count = Counted(blocks, streamed)
                trainer = StopAtFirstBatch(model=tiny_llama(), args=config(folder, **settings),
                                           train_dataset=count.data)
                start = time.perf_counter()
                try:
                    trainer.train(resume_from_checkpoint=os.path.join(folder, f"checkpoint-{step}"))
                except FirstBatch:
                    seconds = time.perf_counter() - start
                rows.append(["streamed" if streamed else "map-style",
                             "saved position" if saved_position else "replay (no saved position)", f"{step:,}",
                             f"{count.blocks:,}", f"{seconds:.2f}"])
    setting = (f"tiny Llama, {args.steps} steps of 2 rows (switch at {args.steps // 2}, s = 3), "
               f"{torch.get_num_threads()} threads; blocks read and seconds from train() to the first new batch.")
    header = ["data", "resume", "from step", "blocks read", "seconds"]
    publish(f"{setting}\n\n{markdown_table(header, rows)}", args.output)


if __name__ == "__main__":
    main()

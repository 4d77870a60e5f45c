"""A tiny TST run over a position-coded stream (block k holds ids 4k..4k+3) under whatever launcher starts it;
each process writes the blocks of its micro-batches, in order, to OUT/rank{R}.json.

    accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2 tests/run_stream_ranks.py OUT SHARDS
"""

import json
import os
import sys
import warnings

import datasets
import torch

sys.path.insert(0, os.path.dirname(__file__))
from conftest import config, tiny_llama  # noqa: E402

from hf_tst import TSTTrainer  # noqa: E402

BLOCKS, L = 60, 4


class Recording(TSTTrainer):
    def training_step(self, model, inputs, num_items_in_batch=None):
        self.seen = getattr(self, "seen", []) + [inputs["input_ids"].tolist()]
        return super().training_step(model, inputs, num_items_in_batch)


def main():
    output_dir, shards = sys.argv[1], int(sys.argv[2])
    warnings.simplefilter("ignore")
    ids = torch.arange(BLOCKS * L).view(BLOCKS, L).tolist()
    stream = datasets.Dataset.from_dict({"input_ids": ids}).to_iterable_dataset(num_shards=shards)
    # per process: 2 superposition steps of 2 rows x 2 blocks, then 6 recovery steps of 2 blocks: 20 blocks
    args = config(output_dir, max_steps=8, tst_ratio=0.25, tst_bag_size=2, per_device_train_batch_size=2)
    trainer = Recording(model=tiny_llama(vocab_size=BLOCKS * L), args=args, train_dataset=stream)
    trainer.train()
    with open(os.path.join(output_dir, f"rank{trainer.accelerator.process_index}.json"), "w") as f:
        json.dump({"batches": trainer.seen, "per_process": trainer._block_stream.per_process}, f)
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main()

"""Data benchmark: how fast the CPU prepares training batches, TST's phase-aware stream and collator
against the plain `Trainer`'s data path, on the same packed 🤗 dataset, in this one process.

Variants (per_device batch B, block L, bag size s):
  - plain Trainer: `dataset[i]` per row and transformers' `default_data_collator`, B rows of L tokens;
  - TST recovery: `PhasedBlockStream` + `TSTDataCollator`, B rows of L tokens;
  - TST superposition: B rows of s*L tokens (s blocks each) with their bag targets.
A GPU step waits for its batch when the dataloader workers prepare batches more slowly than the
model consumes them; a superposition step consumes s times the data tokens of a plain one.

    python benchmarks/data.py [--batch_size 32 --block_size 1024 --bag_size 6]
"""

import argparse
import time

import datasets
import torch
from measure import markdown_table, publish
from transformers import default_data_collator

from hf_tst.data import PhasedBlockStream, TSTDataCollator


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=32, help="B, rows per batch")
    parser.add_argument("--block_size", type=int, default=1024, help="L, tokens per block")
    parser.add_argument("--bag_size", type=int, default=6)
    parser.add_argument("--vocab_size", type=int, default=32768)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per variant, after one warm-up")
    parser.add_argument("--output", help="also write the table (markdown) to this file")
    return parser.parse_args()


def seconds_per_batch(next_batch, batches: int) -> float:
    next_batch()
    start = time.perf_counter()
    for _ in range(batches):
        next_batch()
    return (time.perf_counter() - start) / batches


def main():
    args = parse_args()
    B, L, s = args.batch_size, args.block_size, args.bag_size
    blocks = (args.batches + 2) * B * s * 2
    ids = torch.randint(0, args.vocab_size, (blocks, L), generator=torch.Generator().manual_seed(0))
    dataset = datasets.Dataset.from_dict({"input_ids": ids.tolist()})
    collator = TSTDataCollator(vocab_size=args.vocab_size)

    def plain():
        rows = iter(torch.randperm(blocks).tolist())
        return lambda: default_data_collator([dataset[next(rows)] for _ in range(B)])

    def tst(superposition: bool):
        rows = iter(PhasedBlockStream(dataset, bag_size=s, blocks_per_bagged_row=s, batch_size=B, seed=0,
                                      superposition_steps=blocks if superposition else 0))
        return lambda: collator([next(rows) for _ in range(B)])

    variants = {"plain Trainer": (plain(), B * L), "TST recovery": (tst(False), B * L),
                "TST superposition": (tst(True), B * L * s)}
    times = {name: seconds_per_batch(call, args.batches) for name, (call, _) in variants.items()}
    baseline = B * L / times["plain Trainer"]
    rows = []
    for name, (_, tokens) in variants.items():
        rate = tokens / times[name]
        rows.append([name, f"{times[name] * 1000:.1f}", f"{tokens:,}", f"{rate:,.0f}", f"{rate / baseline:.2f}"])
    setting = f"B={B}, L={L}, s={s}, one process (no dataloader workers), {torch.get_num_threads()} threads."
    header = ["batch", "ms/batch", "data tokens/batch", "data tokens/s", "÷ plain Trainer"]
    publish(f"{setting}\n\n{markdown_table(header, rows)}", args.output)


if __name__ == "__main__":
    main()

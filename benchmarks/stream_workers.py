"""Stream-worker benchmark: data tokens per second that a streamed corpus delivers as TST superposition
batches with 0, 1 and 2 DataLoader workers, side by side in this one run.

The pipeline a streamed pre-training run uses: JSON lines text read as a 🤗 streaming dataset in
shards (the embedded corpus split into 4 files), tokenised and packed on the fly (`pack_text_dataset`),
folded s blocks to a row by `PhasedBlockStream` and collated by `TSTDataCollator`. With workers, each
worker reads, tokenises and packs its own shards while the training process only takes batches.

Each variant runs twice: taking batches as fast as they come (the data path alone), and with a
training step of `--step_ms` after each batch during which the training process waits (as it waits
for the GPU): there workers prepare the next batches meanwhile, while without them the step waits
for its data.

    python benchmarks/stream_workers.py [--batch_size 8 --block_size 512 --bag_size 6 --batches 100]
"""

import argparse
import gzip
import os
import tempfile
import time

import datasets
import torch
from measure import markdown_table, publish
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from hf_tst.data import PhasedBlockStream, TSTDataCollator
from hf_tst.text import pack_text_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARDS = 4


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=8, help="B, rows per batch")
    parser.add_argument("--block_size", type=int, default=512, help="L, tokens per block")
    parser.add_argument("--bag_size", type=int, default=6)
    parser.add_argument("--batches", type=int, default=100, help="timed batches per variant, after two warm-up")
    parser.add_argument("--step_ms", type=float, default=20.0, help="the simulated training step, in ms")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", help="also write the table (markdown) to this file")
    return parser.parse_args()


def shard_files(folder: str) -> list[str]:
    """The embedded training corpus as SHARDS JSON lines files, documents dealt round-robin."""
    with gzip.open(os.path.join(REPO, "recipes", "data", "python-docs", "train.jsonl.gz"), "rt") as corpus:
        lines = corpus.readlines()
    paths = [os.path.join(folder, f"shard-{k}.jsonl") for k in range(SHARDS)]
    for k, path in enumerate(paths):
        with open(path, "w") as shard:
            shard.writelines(lines[k::SHARDS])
    return paths


def tokens_per_second(files: list[str], tokenizer, args, workers: int, step_seconds: float) -> float:
    stream = datasets.load_dataset("json", data_files=files, split="train", streaming=True)
    blocks = pack_text_dataset(stream, tokenizer, args.block_size)
    rows = PhasedBlockStream(blocks, bag_size=args.bag_size, blocks_per_bagged_row=args.bag_size,
                             superposition_steps=10**9, batch_size=args.batch_size, seed=0)
    loader = DataLoader(rows, batch_size=args.batch_size, collate_fn=TSTDataCollator(), num_workers=workers)
    batches = iter(loader)
    for _ in range(2):  # warm-up: worker start, first shards opened
        next(batches)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(batches)
        time.sleep(step_seconds)  # the training step: the process waits, the workers do not
    seconds = time.perf_counter() - start
    return args.batches * args.batch_size * args.block_size * args.bag_size / seconds


def main():
    args = parse_args()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(REPO, "recipes", "tokenizer"))
    with tempfile.TemporaryDirectory() as folder:
        files = shard_files(folder)
        rates = {(workers, step): tokens_per_second(files, tokenizer, args, workers, step / 1000)
                 for step in (0.0, args.step_ms) for workers in args.workers}
    rows = [[f"{step:g} ms" if step else "none (data path alone)", str(workers), f"{rate:,.0f}",
             f"{rate / rates[args.workers[0], step]:.2f}"] for (workers, step), rate in rates.items()]
    setting = (f"B={args.batch_size}, L={args.block_size}, s={args.bag_size}: superposition batches of "
               f"{args.batch_size * args.block_size * args.bag_size:,} data tokens from the embedded corpus in "
               f"{SHARDS} streamed shards, tokenised and packed on the fly; {os.cpu_count()} CPU cores; "
               f"{args.batches} batches timed after 2; the tokenizer is Rust's fast one, itself multi-threaded.")
    header = ["training step", "DataLoader workers", "data tokens/s", f"÷ {args.workers[0]} workers"]
    publish(f"{setting}\n\n{markdown_table(header, rows)}", args.output)


if __name__ == "__main__":
    main()

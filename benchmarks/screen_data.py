"""Data that travels: a text corpus turned into pre-tokenized, packed blocks in compressed Parquet shards,
small enough to carry to a machine without network (the GPU screen's device gets the working tree plus at
most 64 MiB of ignored files).

Each split is tokenised with the shipped tokenizer and packed into blocks of `--block_size` tokens as the
recipes pack text (`hf_tst.text.pack_text_dataset`); the ids are stored as uint16 (the vocabulary has
8,192 tokens) in zstd-compressed Parquet, the training split in `--shards` files. `recipes/train.py` reads
them through 🤗 datasets' Parquet loader (`--train_files 'DIR/train-*.parquet'`) and trains on the blocks as
they are. `manifest.json` records the tokens and blocks per split, for the screen's epoch arithmetic.

    python benchmarks/screen_data.py --train outputs/study-corpus/train.jsonl \\
        --validation outputs/study-corpus/validation.jsonl --out_dir outputs/screen-data
"""

import argparse
import json
import os

import datasets
import pyarrow.parquet as pq
from transformers import AutoTokenizer

from hf_tst.text import pack_text_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, help="JSON lines file(s) of training text")
    parser.add_argument("--validation", required=True, help="JSON lines file(s) of held-out text")
    parser.add_argument("--block_size", type=int, default=2048)
    parser.add_argument("--shards", type=int, default=4, help="training Parquet files")
    parser.add_argument("--max_validation_blocks", type=int, default=256)
    parser.add_argument("--out_dir", default="outputs/screen-data")
    return parser.parse_args()


def blocks(files: str, tokenizer, block_size: int, split: str) -> datasets.Dataset:
    text = datasets.load_dataset("json", data_files=files, split="train")
    packed = pack_text_dataset(text, tokenizer, block_size, split=split)
    return packed.cast_column("input_ids", datasets.Sequence(datasets.Value("uint16")))


def write_parquet(dataset: datasets.Dataset, path: str) -> None:
    """The dataset's Arrow table, zstd-compressed (datasets' `to_parquet` fixes its own compression)."""
    pq.write_table(dataset.flatten_indices().data.table, path, compression="zstd")


def main():
    args = parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(REPO, "recipes", "tokenizer"))
    assert len(tokenizer) <= 2**16, "uint16 ids need a vocabulary of at most 65,536 tokens"
    train = blocks(args.train, tokenizer, args.block_size, "train")
    held_out = blocks(args.validation, tokenizer, args.block_size, "validation")
    held_out = held_out.select(range(min(args.max_validation_blocks, len(held_out))))
    files = []
    for shard in range(args.shards):
        files.append(os.path.join(args.out_dir, f"train-{shard:02d}.parquet"))
        write_parquet(train.shard(args.shards, shard, contiguous=True), files[-1])
    files.append(os.path.join(args.out_dir, "validation.parquet"))
    write_parquet(held_out, files[-1])
    mib = sum(os.path.getsize(path) for path in files) / 2**20
    manifest = {"block_size": args.block_size, "train_blocks": len(train), "train_tokens": len(train) * args.block_size,
                "validation_blocks": len(held_out), "mib": round(mib, 1), "sources": [args.train, args.validation]}
    with open(os.path.join(args.out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"{len(train):,} training blocks ({manifest['train_tokens']:,} tokens) in {args.shards} shards and "
          f"{len(held_out):,} held-out blocks of {args.block_size}: {mib:.1f} MiB in {args.out_dir}")


if __name__ == "__main__":
    main()

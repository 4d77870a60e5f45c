"""What `TSTTrainer` refuses before any compute: inputs that TST cannot train on, each with the
parameter and the fix named."""

import os

import torch
from torch.utils.data import IterableDataset

from .config import TSTConfig
from .errors import UsageError
from .modeling import check_positions, vocab_size
from .superpose import check_superposable


def check_before_training(model, args: TSTConfig, train_dataset, processing_class, compute_loss_func) -> None:
    """Refuse, before any compute, inputs that TST cannot train on, naming the parameter and the fix."""
    if compute_loss_func is not None:
        raise UsageError("compute_loss_func is not supported: TSTTrainer's loss is TST's own (multi-hot "
                         "cross-entropy in superposition, next-token cross-entropy in recovery); leave it unset, "
                         "or subclass TSTTrainer and override compute_loss.")
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size == 1:
        raise UsageError(f"{launched} processes were launched (WORLD_SIZE={launched}) but the training arguments are "
                         "not distributed, so each process would train alone on all the data into one output_dir; "
                         "on a machine without GPUs pass use_cpu=True (--use_cpu true).")
    if args.n_gpu > 1:
        raise UsageError(f"{args.n_gpu} GPUs are visible to one process, which Trainer would drive with "
                         "torch.nn.DataParallel: its replica threads would share TST's embedding and LM-head hooks. "
                         f"Launch one process per GPU (accelerate launch --num_processes {args.n_gpu} ..., hf-tst "
                         "train, or torchrun), or make one GPU visible (CUDA_VISIBLE_DEVICES=0).")
    if args.tst_ratio > 0 and getattr(args.accelerator_config, "split_batches", False):
        raise UsageError("accelerator_config.split_batches=True splits each batch between the processes, which moves "
                         "the rows every optimizer step reads and so the phase switch; leave split_batches off and set "
                         "per_device_train_batch_size to each process's share.")
    if getattr(args, "enable_jit_checkpoint", False) and args.tst_save_on_signal:
        raise UsageError(f"enable_jit_checkpoint=True would install a second handler for "
                         f"{', '.join(args.tst_save_on_signal)}, beside tst_save_on_signal's, which already saves a "
                         "whole checkpoint at the end of the step; leave enable_jit_checkpoint off, or set "
                         "tst_save_on_signal none to use transformers' instead.")
    if model is not None and args.tst_ratio > 0 and args.tst_superpose != "output":
        check_superposable(model)
    rows, tokens = vocab_size(model), len(processing_class) if hasattr(processing_class, "__len__") else None
    if rows is not None and tokens is not None and tokens > rows:
        raise UsageError(f"the tokenizer (processing_class) has {tokens} tokens but the model's input embedding only "
                         f"{rows} rows; use the model's own tokenizer, or call "
                         f"model.resize_token_embeddings({tokens}) before training.")
    columns = getattr(train_dataset, "column_names", None)
    if columns is not None and "input_ids" not in columns:
        raise UsageError(f"train_dataset has no 'input_ids' column (columns: {columns}); tokenise and pack the "
                         "text first, e.g. with hf_tst.text.pack_text_dataset(dataset, tokenizer, block_size).")
    map_style = train_dataset is not None and not isinstance(train_dataset, IterableDataset)
    if map_style and len(train_dataset):
        first = train_dataset[0]  # read once: it may be a costly read of a large dataset
        check_labels(first)  # the collator checks every row; the first one fails here, before training
        check_row_length(len(first["input_ids"]), args, "len(train_dataset[0]['input_ids'])")
        if model is not None:
            check_positions(model, len(first["input_ids"]))  # a row's positions: its block's length


def check_row_length(length: int, args: TSTConfig, what: str) -> None:
    """Refuse rows of `length` tokens (`what` names them) that leave no next token to predict in one of the phases:
    a row needs 2 positions, and batch folding turns a row of L tokens into ceil(L/s) positions of bags (the last
    one padded), so L > s."""
    folded = args.tst_ratio > 0 and args.tst_fold == "batch"
    if length < 2:
        raise UsageError(f"{what}={length}: a row needs at least 2 tokens, one to read and the next to predict; use "
                         "a block size of 2 or more (the model's context, such as 1024).")
    if folded and length <= args.tst_bag_size:
        raise UsageError(f"{what}={length}: tst_fold='batch' folds a row of L tokens into bags of s = tst_bag_size = "
                         f"{args.tst_bag_size}, and a next bag to predict needs at least 2 of them; use a block size "
                         f"of {args.tst_bag_size + 1} or more (ideally a multiple of s), a smaller tst_bag_size, or "
                         "tst_fold='sequence'.")


def check_stream_readers(dataset, workers: int, what: str) -> None:
    """Refuse DataLoader workers that a streamed `dataset` (what one process reads: `what` says which part) cannot
    feed: each worker reads its own shards, so a worker count that does not divide them leaves a worker without
    data. Called once the stream is split between the processes, on each process's part."""
    if workers == 0 or not isinstance(dataset, IterableDataset):
        return
    shards = getattr(dataset, "num_shards", None)
    if not shards or shards % workers:
        raise UsageError(f"dataloader_num_workers={workers}: each DataLoader worker reads its own shards of a "
                         f"streaming dataset, and {what} has {shards or 'no'} shard(s); use a worker count that "
                         "divides them (1 reads them all), or reshard the data (more data files, or "
                         "Dataset.to_iterable_dataset(num_shards=...)).")


def check_labels(row: dict) -> None:
    """Refuse a row whose `labels` differ from its `input_ids` (where `attention_mask` marks real tokens):
    TST builds its own targets from `input_ids` (next bags, then next tokens), so other labels would be
    silently ignored. A copy of `input_ids`, as run_clm's packing makes, is accepted."""
    if "labels" not in row:
        return
    ids, labels = torch.as_tensor(row["input_ids"]), torch.as_tensor(row["labels"])
    real = torch.as_tensor(row["attention_mask"]).bool() if "attention_mask" in row else torch.ones_like(ids).bool()
    if labels.shape != ids.shape or not torch.equal(labels[real], ids[real]):
        raise UsageError("the dataset's 'labels' column differs from its 'input_ids': TST builds its own targets "
                         "from input_ids (the next bag in superposition, the next token in recovery) and cannot "
                         "train on other labels; drop the column (dataset.remove_columns('labels')) or make it a "
                         "copy of input_ids.")

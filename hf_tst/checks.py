"""What `TSTTrainer` refuses before any compute: inputs that TST cannot train on, each with the
parameter and the fix named."""

import os

import torch
from torch.utils.data import IterableDataset

from .config import TSTConfig
from .modeling import check_positions, vocab_size
from .superpose import check_superposable


def check_before_training(model, args: TSTConfig, train_dataset, processing_class, compute_loss_func) -> None:
    """Refuse, before any compute, inputs that TST cannot train on, naming the parameter and the fix."""
    if compute_loss_func is not None:
        raise ValueError("compute_loss_func is not supported: TSTTrainer's loss is TST's own (multi-hot "
                         "cross-entropy in superposition, next-token cross-entropy in recovery); leave it unset, "
                         "or subclass TSTTrainer and override compute_loss.")
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size == 1:
        raise ValueError(f"{launched} processes were launched (WORLD_SIZE={launched}) but the training arguments are "
                         "not distributed, so each process would train alone on all the data into one output_dir; "
                         "on a machine without GPUs pass use_cpu=True (--use_cpu true).")
    if model is not None and args.tst_ratio > 0 and args.tst_superpose != "output":
        check_superposable(model)
    rows, tokens = vocab_size(model), len(processing_class) if hasattr(processing_class, "__len__") else None
    if rows is not None and tokens is not None and tokens > rows:
        raise ValueError(f"the tokenizer (processing_class) has {tokens} tokens but the model's input embedding only "
                         f"{rows} rows; use the model's own tokenizer, or call "
                         f"model.resize_token_embeddings({tokens}) before training.")
    columns = getattr(train_dataset, "column_names", None)
    if columns is not None and "input_ids" not in columns:
        raise ValueError(f"train_dataset has no 'input_ids' column (columns: {columns}); tokenise and pack the "
                         "text first, e.g. with hf_tst.text.pack_text_dataset(dataset, tokenizer, block_size).")
    workers = args.dataloader_num_workers
    if workers > 0 and isinstance(train_dataset, IterableDataset):
        shards = getattr(train_dataset, "num_shards", None)
        if not shards or shards % workers:
            raise ValueError(f"dataloader_num_workers={workers}: each DataLoader worker reads its own shards of a "
                             f"streaming train_dataset, which has {shards or 'no'} shard(s); use a worker count that "
                             "divides the shards (1 reads them all), or reshard the data (more data files, or "
                             "Dataset.to_iterable_dataset(num_shards=...)).")
    map_style = train_dataset is not None and not isinstance(train_dataset, IterableDataset)
    if map_style and len(train_dataset):
        check_labels(train_dataset[0])  # the collator checks every row; the first one fails here, before training
        if model is not None:
            check_positions(model, len(train_dataset[0]["input_ids"]))  # a row's positions: its block's length


def check_labels(row: dict) -> None:
    """Refuse a row whose `labels` differ from its `input_ids` (where `attention_mask` marks real tokens):
    TST builds its own targets from `input_ids` (next bags, then next tokens), so other labels would be
    silently ignored. A copy of `input_ids`, as run_clm's packing makes, is accepted."""
    if "labels" not in row:
        return
    ids, labels = torch.as_tensor(row["input_ids"]), torch.as_tensor(row["labels"])
    real = torch.as_tensor(row["attention_mask"]).bool() if "attention_mask" in row else torch.ones_like(ids).bool()
    if labels.shape != ids.shape or not torch.equal(labels[real], ids[real]):
        raise ValueError("the dataset's 'labels' column differs from its 'input_ids': TST builds its own targets "
                         "from input_ids (the next bag in superposition, the next token in recovery) and cannot "
                         "train on other labels; drop the column (dataset.remove_columns('labels')) or make it a "
                         "copy of input_ids.")

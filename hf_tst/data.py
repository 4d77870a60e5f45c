"""Phase-aware training data: one stream of the dataset's blocks, folded s to a row while the
run is in its superposition phase, and the collator that turns rows into batches.

The dataset is what a plain `Trainer` pre-training run takes: items with `input_ids` (packed
blocks of L tokens, or padded documents with an `attention_mask`). A superposition row takes s
consecutive blocks of the stream: joined into one sequence of L*s data tokens folded to L
positions (sequence folding, the same model compute as a plain row of L tokens), or kept as s
rows of L tokens folded to L/s positions each (batch folding). A recovery row is one block.
The stream runs on across the phase switch and across epochs, so no block is read twice within
an epoch and none is skipped.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .superpose import IGNORE_INDEX, next_bag_targets, next_tokens_targets


class PhasedBlockStream(IterableDataset):
    """Training rows of a TST run: `superposition_rows` rows of `blocks_per_bagged_row` blocks
    each, marked with `bag_size`, then single-block rows for the rest of the run.

    Block order is the one a plain `Trainer` reads: for a map-style dataset, a permutation per
    epoch drawn from `seed + epoch` (as accelerate's seedable sampler draws it) or the dataset
    order when `shuffle` is False; for an iterable dataset, its own order, with `set_epoch`
    called before each pass. The stream never ends: the trainer stops at `max_steps`.
    With DataLoader workers, worker w yields the batches b with b % num_workers == w, so the
    loader's output order is the stream's order.
    """

    def __init__(self, dataset: Dataset | IterableDataset, *, bag_size: int, blocks_per_bagged_row: int,
                 superposition_rows: int, batch_size: int, seed: int, shuffle: bool = True,
                 fold_into_batch: bool = False):
        self.dataset = dataset
        self.bag_size = bag_size
        self.blocks_per_bagged_row = blocks_per_bagged_row
        self.superposition_rows = superposition_rows
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.fold_into_batch = fold_into_batch
        self.is_map_style = not isinstance(dataset, IterableDataset)

    def epochs_read(self, rows: int) -> float:
        """Passes over a map-style dataset made by the stream's first `rows` rows."""
        bagged = min(rows, self.superposition_rows)
        return (bagged * self.blocks_per_bagged_row + rows - bagged) / len(self.dataset)

    def _block_refs(self) -> Iterator[Any]:
        """Endless refs to blocks, epoch after epoch: indices (map-style) or the items themselves."""
        for epoch in itertools.count():
            if self.is_map_style:
                if self.shuffle:
                    generator = torch.Generator().manual_seed(self.seed + epoch)
                    order = torch.randperm(len(self.dataset), generator=generator)
                else:
                    order = torch.arange(len(self.dataset))
                blocks = order.tolist()
            else:
                if hasattr(self.dataset, "set_epoch"):
                    self.dataset.set_epoch(epoch)
                blocks = self.dataset
            read = 0
            for ref in blocks:
                read += 1
                yield ref
            if epoch == 0:
                self._check_enough_blocks(read)

    def _check_enough_blocks(self, blocks_in_epoch: int) -> None:
        """Refuse data that cannot fill one batch without repeating blocks (raised while the first
        batch is built, before any compute)."""
        per_row = self.blocks_per_bagged_row if self.superposition_rows else 1
        needed = self.batch_size * per_row
        if blocks_in_epoch < needed:
            raise ValueError(
                f"train_dataset holds {blocks_in_epoch} blocks, fewer than one batch needs "
                f"(per_device_train_batch_size {self.batch_size} x {per_row} blocks per row = {needed}); add data, "
                "or lower per_device_train_batch_size or tst_bag_size (or the block size, if documents are short).")

    def __iter__(self) -> Iterator[dict]:
        worker = get_worker_info()
        num_workers, worker_id = (1, 0) if worker is None else (worker.num_workers, worker.id)
        if num_workers > 1 and not self.is_map_style:
            raise ValueError("dataloader_num_workers > 0 is not supported with an iterable (streaming) "
                             "train_dataset under TST; set dataloader_num_workers=0.")
        refs = self._block_refs()
        for row in itertools.count():
            bagged = row < self.superposition_rows
            row_refs = list(itertools.islice(refs, self.blocks_per_bagged_row if bagged else 1))
            if (row // self.batch_size) % num_workers != worker_id:
                continue  # another worker's batch; only map-style refs get here, so skipping reads nothing
            blocks = [self.dataset[ref] for ref in row_refs] if self.is_map_style else row_refs
            if bagged and self.fold_into_batch:
                yield {"blocks": [join_blocks([block], self.bag_size) for block in blocks]}
            else:
                yield join_blocks(blocks, self.bag_size if bagged else None)


def join_blocks(blocks: list[dict], bag_size: int | None) -> dict:
    """One row from consecutive blocks; `bag_size` marks a superposition row."""
    row = {"input_ids": torch.cat([torch.as_tensor(b["input_ids"]) for b in blocks])}
    if any("attention_mask" in b for b in blocks):
        row["attention_mask"] = torch.cat([
            torch.as_tensor(b["attention_mask"]) if "attention_mask" in b else torch.ones(len(b["input_ids"]))
            for b in blocks
        ]).long()
    if bag_size is not None:
        row["bag_size"] = bag_size
    return row


@dataclass
class TSTDataCollator:
    """Pads rows into a batch and builds the targets of the row's phase.

    Plain rows (no `bag_size`) give `input_ids`, `attention_mask` and next-token `labels`, as a
    causal-LM collator does. Superposition rows (with `bag_size` s) give `input_ids` and
    `attention_mask` of all L*s data tokens plus `bag_labels` (B, L, s): the next bag of each
    bagged position (`superpose="full"`), its first token only (`"input"`), or, for rows that
    stay unbagged, the next s tokens of each position (`"output"`). A batch-folded row (`blocks`)
    becomes one row per block. Rows are padded to whole bags; padding never becomes a target.
    """

    pad_token_id: int = 0
    superpose: str = "full"
    vocab_size: int | None = None  # when set, token ids must lie in [0, vocab_size)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        rows = [block for row in rows for block in row.get("blocks", [row])]  # batch folding: a block per row
        bag_sizes = {row.get("bag_size") for row in rows}
        if len(bag_sizes) != 1:
            raise ValueError(f"a batch mixes rows of bag sizes {bag_sizes}; each batch must lie in one phase.")
        bag_size = bag_sizes.pop()
        ids = [torch.as_tensor(row["input_ids"], dtype=torch.long) for row in rows]
        masks = [torch.as_tensor(row["attention_mask"], dtype=torch.long) if "attention_mask" in row
                 else torch.ones_like(i) for row, i in zip(rows, ids, strict=True)]
        input_ids = pad_sequence(ids, batch_first=True, padding_value=self.pad_token_id)
        attention_mask = pad_sequence(masks, batch_first=True, padding_value=0)
        if bag_size is not None and self.superpose != "output":  # whole bags only
            missing = -input_ids.shape[1] % bag_size
            input_ids = nn.functional.pad(input_ids, (0, missing), value=self.pad_token_id)
            attention_mask = nn.functional.pad(attention_mask, (0, missing), value=0)
        if self.vocab_size is not None and (input_ids.max() >= self.vocab_size or input_ids.min() < 0):
            bad = input_ids[(input_ids >= self.vocab_size) | (input_ids < 0)][0].item()
            raise ValueError(f"token id {bad} in the data lies outside the model's vocabulary [0, {self.vocab_size}): "
                             "the data was tokenised with another tokenizer; re-tokenise it with the model's, or "
                             "resize the model's embeddings (model.resize_token_embeddings).")
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if bag_size is None:
            batch["labels"] = labels
        elif self.superpose == "output":
            batch["bag_labels"] = next_tokens_targets(labels, bag_size)
        else:
            targets = next_bag_targets(labels, bag_size)
            batch["bag_labels"] = targets[..., :1] if self.superpose == "input" else targets
        return batch


def pack_text_dataset(dataset, tokenizer, block_size: int, text_column: str = "text"):
    """Tokenise a text dataset and pack it into blocks of `block_size` token ids, as transformers'
    run_clm example does: documents joined with the EOS token, the last partial block dropped.
    Works on a `datasets.Dataset` and on a streaming `datasets.IterableDataset` alike."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token; packing needs one to separate documents.")

    def tokenize_and_pack(batch):
        ids = [i for doc in tokenizer(batch[text_column])["input_ids"] for i in doc + [tokenizer.eos_token_id]]
        usable = len(ids) // block_size * block_size
        return {"input_ids": [ids[k:k + block_size] for k in range(0, usable, block_size)]}

    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise ValueError(f"text_column={text_column!r} is not a column of the dataset (columns: {columns}).")
    return dataset.map(tokenize_and_pack, batched=True, batch_size=1000, remove_columns=columns)

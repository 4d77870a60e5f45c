"""Phase-aware training data: one stream of the dataset's blocks, folded s to a row while the
run is in its superposition phase, and the collator that turns rows into batches.

The dataset is what a plain `Trainer` pre-training run takes: items with `input_ids` (packed
blocks of L tokens, or padded documents with an `attention_mask`). A superposition row takes s
consecutive blocks of the dataset (the paper's contiguous data sequence of L*s tokens) joined
and folded to L positions (sequence folding, the same model compute as a plain row of L tokens),
or s randomly drawn blocks kept as s rows of L tokens folded to L/s positions each (batch
folding). A recovery row is one block. The stream runs on across the phase switch and across
epochs, so no block is read twice within an epoch.

Contract: pack the corpus in order (as `pack_text_dataset` and transformers' `run_clm` do) and
let `TSTTrainer` shuffle; a dataset shuffled before packing or before training has no
contiguous runs of blocks left to find.

`load_text` and `pack_text_dataset` make such a dataset from local files or Hub datasets.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import datasets
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, IterableDataset, get_worker_info
from transformers.utils import logging

from .arguments import DataArguments
from .superpose import IGNORE_INDEX, next_bag_targets, next_tokens_targets

logger = logging.get_logger(__name__)


class PhasedBlockStream(IterableDataset):
    """Training rows of a TST run: `superposition_rows` rows of `blocks_per_bagged_row` blocks
    each, marked with `bag_size`, then single-block rows for the rest of the run.

    Map-style data is read one pass (epoch) at a time, each pass drawn from `seed + epoch` (as
    accelerate's seedable sampler draws it; in dataset order when `shuffle` is False):
    - With `contiguous_rows` (the paper's data sequences), a superposition row is s consecutive
      blocks of the dataset, `[g*s, g*s + s)`: L*s contiguous tokens of a corpus packed in order.
      The groups come in a shuffled order.
    - Otherwise a superposition row is s consecutive blocks of the pass's permutation: s blocks
      drawn at random (used by batch folding, whose s blocks become s separate rows anyway).
    - In the pass where the switch falls, the blocks not yet read follow as recovery rows, in a
      fresh permutation (contiguous rows) or the permutation's own order: every block is read
      exactly once in that pass, straight across the switch. Later passes are plain permutations,
      the order a plain `Trainer` reads.
    - A pass that lies wholly in the superposition phase leaves out the fewer than s blocks that
      fill no row (`len(dataset) % s` of them), as `drop_last` would.

    An iterable (streaming) dataset keeps its own order: a superposition row is its next s blocks,
    and `set_epoch` is called before each pass. The stream never ends: the trainer stops at
    `max_steps`. With DataLoader workers, worker w yields the batches b with b % num_workers == w,
    so the loader's output order is the stream's order.
    """

    def __init__(self, dataset: Dataset | IterableDataset, *, bag_size: int, blocks_per_bagged_row: int,
                 superposition_rows: int, batch_size: int, seed: int, shuffle: bool = True,
                 contiguous_rows: bool = True, fold_into_batch: bool = False):
        self.dataset = dataset
        self.bag_size = bag_size
        self.blocks_per_bagged_row = blocks_per_bagged_row
        self.superposition_rows = superposition_rows
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.contiguous_rows = contiguous_rows
        self.fold_into_batch = fold_into_batch
        self.is_map_style = not isinstance(dataset, IterableDataset)

    def epochs_read(self, rows: int) -> float:
        """Passes over a map-style dataset made by the stream's first `rows` rows."""
        blocks, per_row = len(self.dataset), self.blocks_per_bagged_row
        epochs, bagged_left = 0, self.superposition_rows
        while bagged_left > blocks // per_row:  # passes wholly in superposition: blocks // per_row rows each
            if rows < blocks // per_row:
                return epochs + rows * per_row / blocks
            epochs, rows, bagged_left = epochs + 1, rows - blocks // per_row, bagged_left - blocks // per_row
        bagged = min(rows, bagged_left)
        return epochs + (bagged * per_row + rows - bagged) / blocks

    def _epoch_rows(self, epoch: int, bagged_left: int) -> list[list[int]]:
        """The rows (lists of block indices) of one pass over a map-style dataset, `bagged_left`
        superposition rows still to come."""
        generator = torch.Generator().manual_seed(self.seed + epoch)

        def order(n: int) -> torch.Tensor:
            return torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)

        blocks, per_row = len(self.dataset), self.blocks_per_bagged_row
        if bagged_left == 0:
            return order(blocks)[:, None].tolist()
        groups = blocks // per_row
        if self.contiguous_rows and per_row > 1:  # (rows of one block are the plain permutation)
            grouped = torch.arange(groups * per_row).view(groups, per_row)[order(groups)]
            bagged = grouped[:bagged_left]
            unread = torch.ones(blocks, dtype=torch.bool)
            unread[bagged.flatten()] = False
            rest = unread.nonzero().flatten()
            rest = rest[order(len(rest))]
        else:
            permutation = order(blocks)
            bagged = permutation[:groups * per_row].view(groups, per_row)[:bagged_left]
            rest = permutation[len(bagged) * per_row:]
        rows = bagged.tolist()
        if bagged_left <= groups:  # the switch falls in this pass: recovery reads what it left
            rows += rest[:, None].tolist()
        return rows

    def _map_style_rows(self) -> Iterator[list[int]]:
        groups = len(self.dataset) // self.blocks_per_bagged_row if self.superposition_rows else len(self.dataset)
        if groups < self.batch_size:
            self._refuse_too_few_blocks(len(self.dataset))
        rows = 0
        for epoch in itertools.count():
            for row in self._epoch_rows(epoch, max(0, self.superposition_rows - rows)):
                rows += 1
                yield row

    def _iterable_rows(self) -> Iterator[list[dict]]:
        def blocks():
            for epoch in itertools.count():
                if hasattr(self.dataset, "set_epoch"):
                    self.dataset.set_epoch(epoch)
                read = 0
                for block in self.dataset:
                    read += 1
                    yield block
                if epoch == 0 and read < self.batch_size * (self.blocks_per_bagged_row if self.superposition_rows
                                                            else 1):
                    self._refuse_too_few_blocks(read)

        stream = blocks()
        for row in itertools.count():
            yield list(itertools.islice(stream, self.blocks_per_bagged_row if row < self.superposition_rows else 1))

    def _block_reader(self):
        """A function from block indices to the blocks of a map-style dataset. A 🤗 `datasets.Dataset` is
        read as tensors, one Arrow lookup per row (s blocks at once) instead of a Python list per block:
        the conversion that dominates a superposition batch's preparation."""
        if not isinstance(self.dataset, datasets.Dataset):
            return lambda refs: [self.dataset[ref] for ref in refs]
        columns = [name for name in ("input_ids", "attention_mask") if name in self.dataset.column_names]
        table = self.dataset.with_format("torch", columns=columns)

        def read(refs: list[int]) -> list[dict]:
            values = table[refs]
            return [{name: values[name][i] for name in columns} for i in range(len(refs))]
        return read

    def _refuse_too_few_blocks(self, blocks_in_epoch: int) -> None:
        """Refuse data that cannot fill one batch without repeating blocks (raised while the first
        batch is built, before any compute)."""
        per_row = self.blocks_per_bagged_row if self.superposition_rows else 1
        needed = self.batch_size * per_row
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
        rows = self._map_style_rows() if self.is_map_style else self._iterable_rows()
        read = self._block_reader() if self.is_map_style else None
        for row, row_refs in enumerate(rows):
            if (row // self.batch_size) % num_workers != worker_id:
                continue  # another worker's batch; only map-style refs get here, so skipping reads nothing
            bagged = row < self.superposition_rows
            blocks = read(row_refs) if self.is_map_style else row_refs
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


def load_text(data: DataArguments) -> tuple:
    """(train, held-out) text datasets: local JSON lines files, or one or more Hub datasets mixed by
    `datasets.interleave_datasets` with `dataset_probabilities` (default: equal), streamed or not."""
    if not data.dataset_name:
        raw = datasets.load_dataset("json", data_files={"train": data.train_files,
                                                        "validation": data.validation_files}, streaming=data.streaming)
        return raw["train"], raw["validation"]
    names = data.dataset_name.split(",")
    configs = (data.dataset_config_name or "").split(",") + [""] * len(names)

    def mixed(split: str):
        parts = [datasets.load_dataset(name, config or None, split=split, streaming=data.streaming)
                 .select_columns([data.text_column]) for name, config in zip(names, configs, strict=False)]
        if len(parts) == 1:
            return parts[0]
        probabilities = data.dataset_probabilities and [float(p) for p in data.dataset_probabilities.split(",")]
        return datasets.interleave_datasets(parts, probabilities=probabilities, seed=0,
                                            stopping_strategy="all_exhausted")

    if data.held_out_documents:
        train = mixed("train")
        return train.skip(data.held_out_documents), train.take(data.held_out_documents)
    return mixed("train"), mixed(data.validation_split)


def pack_text_dataset(dataset, tokenizer, block_size: int, text_column: str = "text", split: str = "train"):
    """Tokenise a text dataset and pack it into blocks of `block_size` token ids, as transformers'
    run_clm example does: documents joined with the EOS token, the last partial block dropped.
    Documents with no usable text are skipped first (`usable_documents`). Works on a
    `datasets.Dataset` and on a streaming `datasets.IterableDataset` alike."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token; packing needs one to separate documents.")

    def tokenize_and_pack(batch):
        ids = [i for doc in tokenizer(batch[text_column])["input_ids"] for i in doc + [tokenizer.eos_token_id]]
        usable = len(ids) // block_size * block_size
        return {"input_ids": [ids[k:k + block_size] for k in range(0, usable, block_size)]}

    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise ValueError(f"text_column={text_column!r} is not a column of the dataset (columns: {columns}).")
    documents = usable_documents(dataset, text_column, split)
    return documents.map(tokenize_and_pack, batched=True, batch_size=1000, remove_columns=columns)


def has_text(document: dict, text_column: str) -> bool:
    """Whether `document` holds text to train on: a string with something besides whitespace."""
    text = document.get(text_column)
    return isinstance(text, str) and text.strip() != ""


def usable_documents(dataset, text_column: str, split: str):
    """`dataset` without its documents whose text is null, empty, whitespace-only, not a string or
    missing, as real corpora hold them. One warning gives the count skipped (a stream, read lazily, warns
    at its first skipped document instead). A split without one usable document is refused."""
    no_text = (f"split {split!r} has no usable text in column {text_column!r} (every document is null, empty, "
               "whitespace-only, not a string or missing); check --text_column and the data files.")
    if isinstance(dataset, datasets.IterableDataset):
        warned = False

        def keep(document: dict) -> bool:
            nonlocal warned
            if has_text(document, text_column):
                return True
            if not warned:
                warned = True
                logger.warning(f"{split}: skipping documents with no usable text in column {text_column!r} (null, "
                               "empty, whitespace-only, not a string or missing) as the stream is read.")
            return False

        kept = dataset.filter(keep)
        if next(iter(kept), None) is None:
            raise ValueError(no_text)
        return kept
    kept = dataset.filter(lambda document: has_text(document, text_column))
    if len(kept) == 0:
        raise ValueError(no_text)
    if len(kept) < len(dataset):
        logger.warning(f"{split}: skipped {len(dataset) - len(kept):,} of {len(dataset):,} documents with no usable "
                       f"text in column {text_column!r} (null, empty, whitespace-only, not a string or missing).")
    return kept

"""Phase-aware training data: one stream of the dataset's blocks, folded s to a row while the
run is in its superposition phase, and the collator that turns rows into batches.

The dataset is what a plain `Trainer` pre-training run takes: items with `input_ids` (packed
blocks of L tokens, or padded documents with an `attention_mask`). A superposition row takes s
consecutive blocks of the dataset (the paper's contiguous data sequence of L*s tokens) joined
and folded to L positions (sequence folding, the same model compute as a plain row of L tokens),
or s randomly drawn blocks kept as s rows of L tokens folded to L/s positions each (batch
folding). A recovery row is one block. The stream runs on across the phase switch and across
epochs, so no block is read twice within an epoch.

Contract: pack the corpus in order (as `hf_tst.text.pack_text_dataset` and transformers' `run_clm`
do) and let `TSTTrainer` shuffle; a dataset shuffled before packing or before training has no
contiguous runs of blocks left to find. A `labels` column may only repeat `input_ids`: TST builds its
own targets.
"""

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import datasets
import torch
from datasets.distributed import split_dataset_by_node
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .checks import check_labels, check_stream_readers
from .errors import UsageError
from .phase import in_superposition, step_of_row
from .superpose import IGNORE_INDEX, next_bag_targets, next_tokens_targets

DATA_STATE = "tst_data_state-{}.json"  # where a checkpoint keeps each process's `PhasedBlockStream.state_dict`


class PhasedBlockStream(IterableDataset):
    """Training rows of a TST run: the rows of its first `superposition_steps` optimizer steps hold
    `blocks_per_bagged_row` blocks each, marked with `bag_size`; later rows hold one block. Which step a
    row feeds, and so its phase, is `hf_tst.phase`'s: row i is read by step i // rows_per_step + 1.

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
    `max_steps`. With DataLoader workers, worker w yields the batches b with b % num_workers == w
    (counted from where the stream starts), so the loader takes them in order. Map-style rows are
    laid out alike in every worker; a streaming dataset's workers each read their own shards (🤗
    datasets splits them), a row being s consecutive blocks of one worker's stream.

    `state_dict(step)`/`load_state_dict` place a resumed stream at a row without reading the rows before
    it: map-style positions are arithmetic (whole passes skipped by count, one pass laid out); a 🤗
    streaming dataset is restored from its own `state_dict`, remembered at each batch start.
    """

    REMEMBERED = 64  # optimizer steps whose stream position is kept for a checkpoint (the loader reads ahead)

    def __init__(self, dataset: Dataset | IterableDataset, *, bag_size: int, blocks_per_bagged_row: int,
                 superposition_steps: int, batch_size: int, seed: int, shuffle: bool = True,
                 contiguous_rows: bool = True, fold_into_batch: bool = False, rows_per_step: int | None = None,
                 per_process: bool = False):
        self.dataset = dataset
        self.rows_per_step = rows_per_step or batch_size  # rows this stream yields per optimizer step
        self.per_process = per_process  # this process's own part of a stream, not all processes' rows
        self.bag_size = bag_size
        self.blocks_per_bagged_row = blocks_per_bagged_row
        self.superposition_steps = superposition_steps
        self.superposition_rows = superposition_steps * self.rows_per_step  # the rows of the superposition steps
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.contiguous_rows = contiguous_rows
        self.fold_into_batch = fold_into_batch
        self.is_map_style = not isinstance(dataset, IterableDataset)
        self._start_row, self._start = 0, None  # set by load_state_dict
        self._epoch, self._positions = 0, {}  # a stream's current epoch; positions by row, for state_dict

    def _passes(self) -> Iterator[tuple[int, int, int]]:
        """(epoch, superposition rows, rows) of each pass over a map-style dataset, endlessly: a pass
        wholly in superposition has `blocks // s` rows (the rest fill no row); the pass of the switch has its
        remaining superposition rows, then one row per block they left; later passes one row per block."""
        blocks, per_row = len(self.dataset), self.blocks_per_bagged_row
        bagged_left = self.superposition_rows
        for epoch in itertools.count():
            bagged = min(bagged_left, blocks // per_row)
            yield epoch, bagged, bagged if bagged < bagged_left else bagged + blocks - bagged * per_row
            bagged_left -= bagged

    def epochs_read(self, rows: int) -> float:
        """Passes over a map-style dataset made by the stream's first `rows` rows."""
        for epoch, bagged, in_pass in self._passes():
            if rows < in_pass:
                return epoch + (min(rows, bagged) * self.blocks_per_bagged_row + max(0, rows - bagged)) / len(
                    self.dataset)
            rows -= in_pass

    def _epoch_layout(self, epoch: int, bagged: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over a map-style dataset as index tensors: its `bagged` superposition rows, (bagged, s)
        block indices, and the blocks they leave in the order recovery reads them (`_passes` says how many)."""
        generator = torch.Generator().manual_seed(self.seed + epoch)

        def order(n: int) -> torch.Tensor:
            return torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)

        blocks, per_row = len(self.dataset), self.blocks_per_bagged_row
        if bagged == 0:
            return torch.empty(0, per_row, dtype=torch.long), order(blocks)
        groups = blocks // per_row
        if self.contiguous_rows and per_row > 1:  # (rows of one block are the plain permutation)
            grouped = torch.arange(groups * per_row).view(groups, per_row)[order(groups)][:bagged]
            unread = torch.ones(blocks, dtype=torch.bool)
            unread[grouped.flatten()] = False
            rest = unread.nonzero().flatten()
            return grouped, rest[order(len(rest))]
        permutation = order(blocks)
        return permutation[:bagged * per_row].view(bagged, per_row), permutation[bagged * per_row:]

    def _map_style_rows(self) -> Iterator[torch.Tensor]:
        """Each row's block indices, lazily, from `_start_row` on: whole passes before it are skipped by count,
        and the pass it falls in is laid out once, as tensors."""
        groups = len(self.dataset) // self.blocks_per_bagged_row if self.superposition_rows else len(self.dataset)
        if groups < self.batch_size:
            self._refuse_too_few_blocks(len(self.dataset))
        skip = self._start_row
        for epoch, bagged, rows in self._passes():
            if skip >= rows:
                skip -= rows
                continue
            grouped, rest = self._epoch_layout(epoch, bagged)
            for row in range(skip, rows):
                yield grouped[row] if row < bagged else rest[row - bagged:row - bagged + 1]
            skip = 0

    def _iterable_rows(self, workers: int, worker_id: int) -> Iterator[tuple[int, list[dict]]]:
        """(row index over all rows, its blocks) of this worker's batches: worker w of W yields batches w, w + W,
        ..., each from its own shards of the dataset (🤗 datasets gives a DataLoader worker its shards)."""
        start = self._start  # where a resumed stream continues: its epoch and the dataset's state there
        first_epoch, resumed_state = (start.get("epoch", 0), start.get("dataset")) if start else (0, None)

        def blocks():
            for epoch in itertools.count(first_epoch):
                if hasattr(self.dataset, "set_epoch"):
                    self.dataset.set_epoch(epoch)
                restored = resumed_state is not None and epoch == first_epoch
                if restored:
                    self.dataset.load_state_dict(resumed_state)
                self._epoch, read = epoch, 0
                for block in self._restored_iter() if restored else self.dataset:
                    read += 1
                    yield block
                per_row = self.blocks_per_bagged_row if self.superposition_rows else 1
                if epoch == 0 and not start and read < self.batch_size * per_row:
                    self._refuse_too_few_blocks(read)

        stream, batch = blocks(), self.batch_size
        # the position is remembered only where read in the training process (a worker's copy of the stream is lost
        # with it), and between steps, where a checkpoint can fall
        in_training_process = get_worker_info() is None
        for read in itertools.count():  # this worker's rows; the loader takes batches from the workers in turn
            row = self._start_row + ((read // batch) * workers + worker_id) * batch + read % batch
            if in_training_process and row % self.rows_per_step == 0:
                self._remember_position(row)
            yield row, list(itertools.islice(stream, self.blocks_per_bagged_row if self.row_is_bagged(row) else 1))

    def _restored_iter(self) -> Iterator[dict]:
        """The dataset iterated from a loaded state; a state of another pipeline (other processing or sources)
        is refused by name instead of failing inside 🤗 datasets."""
        iterator = iter(self.dataset)
        try:
            first = next(iterator, None)
        except (KeyError, IndexError, TypeError) as error:
            files = DATA_STATE.format("*")
            raise UsageError(f"the checkpoint's data position ({files}) does not fit this train_dataset "
                             f"({type(error).__name__}: {error}): it was saved from a dataset processed another way; "
                             f"resume with the same data and processing, or delete {files} from the checkpoint to "
                             "replay the stream up to its position instead.") from error
        if first is not None:
            yield first
            yield from iterator

    def _remember_position(self, row: int) -> None:
        """Keep the stream's position before `row`, the first of an optimizer step (the dataset's own `state_dict`),
        for a checkpoint that may be saved there; the loader reads a few batches ahead, so the last `REMEMBERED`
        steps' positions are kept."""
        if hasattr(self.dataset, "state_dict"):
            self._positions[row] = {"epoch": self._epoch, "dataset": copy.deepcopy(self.dataset.state_dict())}
            self._positions.pop(row - self.REMEMBERED * self.rows_per_step, None)

    @classmethod
    def for_run(cls, dataset, args, batch_size: int, process_index: int, processes: int) -> "PhasedBlockStream":
        """The stream of a `TSTConfig` run with micro-batches of `batch_size` rows. A 🤗 streaming dataset read by
        several processes is split between them (`datasets.distributed.split_dataset_by_node`: whole shards when
        the processes divide them, else every processes-th block), each reading only its own part, with rows of
        its own; other data stays one stream of all the processes' rows, which accelerate deals out."""
        per_process = processes > 1 and isinstance(dataset, datasets.IterableDataset)
        if per_process:
            dataset = split_dataset_by_node(dataset, rank=process_index, world_size=processes)
        part = f"process {process_index}'s part of the train_dataset ({processes} processes)" if per_process else \
            "the train_dataset"
        check_stream_readers(dataset, args.dataloader_num_workers, part)
        rows_per_step = args.gradient_accumulation_steps * batch_size * (1 if per_process else processes)
        return cls(dataset, bag_size=args.tst_bag_size, batch_size=batch_size, rows_per_step=rows_per_step,
                   blocks_per_bagged_row=1 if args.tst_superpose == "output" else args.tst_bag_size,
                   superposition_steps=args.superposition_steps, per_process=per_process,
                   seed=args.data_seed if args.data_seed is not None else args.seed,
                   shuffle=args.train_sampling_strategy != "sequential", fold_into_batch=args.tst_fold == "batch",
                   contiguous_rows=args.tst_contiguous_rows and args.tst_fold == "sequence")

    def state_dict(self, step: int) -> dict | None:
        """The stream's position after `step` optimizer steps: its next row, and for a stream the epoch and the
        dataset's state there; None when that position is no longer remembered."""
        row = step * self.rows_per_step
        if self.is_map_style:
            return {"row": row}
        position = self._positions.get(row)
        return None if position is None else {"row": row, **position}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict`: the next row read is the one it names, and nothing before it is read."""
        self._start_row, self._start = state["row"], state

    def row_is_bagged(self, row: int) -> bool:
        """Whether row `row` feeds a superposition step."""
        return in_superposition(step_of_row(row, self.rows_per_step), self.superposition_steps)

    def _block_reader(self):
        """A function from a row's block indices (a tensor) to its blocks of a map-style dataset. A 🤗
        `datasets.Dataset` is read as tensors, one Arrow lookup per row (s blocks at once) instead of a Python
        list per block: the conversion that dominates a superposition batch's preparation."""
        if not isinstance(self.dataset, datasets.Dataset):
            return lambda refs: [self.dataset[ref] for ref in refs.tolist()]
        columns = [name for name in ("input_ids", "attention_mask", "labels") if name in self.dataset.column_names]
        table = self.dataset.with_format("torch", columns=columns)

        def read(refs: torch.Tensor) -> list[dict]:
            values = table[refs.tolist()]
            return [{name: values[name][i] for name in columns} for i in range(len(refs))]
        return read

    def _refuse_too_few_blocks(self, blocks_in_epoch: int) -> None:
        """Refuse data that cannot fill one batch without repeating blocks (raised while the first
        batch is built, before any compute)."""
        per_row = self.blocks_per_bagged_row if self.superposition_rows else 1
        needed = self.batch_size * per_row
        raise UsageError(
            f"train_dataset holds {blocks_in_epoch} blocks, fewer than one batch needs "
            f"(per_device_train_batch_size {self.batch_size} x {per_row} blocks per row = {needed}); add data, "
            "or lower per_device_train_batch_size or tst_bag_size (or the block size, if documents are short).")

    def __iter__(self) -> Iterator[dict]:
        worker = get_worker_info()
        workers, worker_id = (1, 0) if worker is None else (worker.num_workers, worker.id)
        if self.is_map_style:  # every worker lays out the same rows and reads those of its own batches
            read = self._block_reader()
            rows = ((row, read(refs)) for row, refs in enumerate(self._map_style_rows(), start=self._start_row)
                    if ((row - self._start_row) // self.batch_size) % workers == worker_id)
        else:  # every worker reads its own shards
            rows = self._iterable_rows(workers, worker_id)
        for row, blocks in rows:
            bagged = self.row_is_bagged(row)
            if bagged and self.fold_into_batch:
                yield {"blocks": [join_blocks([block], self.bag_size) for block in blocks]}
            else:
                yield join_blocks(blocks, self.bag_size if bagged else None)


def join_blocks(blocks: list[dict], bag_size: int | None) -> dict:
    """One row from consecutive blocks (each checked by `check_labels`); `bag_size` marks a superposition row."""
    for block in blocks:
        check_labels(block)
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
        for row in rows:  # a plain run's rows come straight from the dataset
            check_labels(row)
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
            raise UsageError(f"token id {bad} in the data lies outside the model's vocabulary [0, {self.vocab_size}): "
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

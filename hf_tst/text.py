"""Text in, packed blocks out: the corpus of a pre-training run read from local JSON lines files or
Hub datasets (mixed by `datasets.interleave_datasets`, streamed or not), with a held-out split, and
tokenised and packed into blocks of L token ids as transformers' `run_clm` packs them."""

import datasets
from transformers.utils import logging

from .arguments import DataArguments
from .errors import UsageError

logger = logging.get_logger(__name__)


def load_text(data: DataArguments) -> tuple:
    """(train, held-out) datasets: local JSON lines files of text or Parquet files of pre-tokenized blocks
    (as `benchmarks/screen_data.py` writes them), or one or more Hub datasets mixed by
    `datasets.interleave_datasets` with `dataset_probabilities` (default: equal), streamed or not.

    With `held_out_documents` N, the first N documents of each dataset are held out before the mixing:
    the training mixture restarts a smaller dataset when it runs out (`all_exhausted`), so documents held
    out of the mixture itself would come back into training."""
    if not data.dataset_name:
        builder = "parquet" if all(path.endswith(".parquet") for path in data.train_files) else "json"
        raw = datasets.load_dataset(builder, data_files={"train": data.train_files,
                                                         "validation": data.validation_files}, streaming=data.streaming)
        return raw["train"], raw["validation"]
    configs = [*(data.dataset_config_name or []), *[None] * len(data.dataset_name)]

    def sources(split: str) -> list:
        return [datasets.load_dataset(name, config or None, split=split, streaming=data.streaming)
                .select_columns([data.text_column]) for name, config in zip(data.dataset_name, configs, strict=False)]

    def mixed(parts: list, stopping_strategy: str = "all_exhausted"):
        if len(parts) == 1:
            return parts[0]
        return datasets.interleave_datasets(parts, probabilities=data.dataset_probabilities, seed=0,
                                            stopping_strategy=stopping_strategy)

    if data.held_out_documents:
        parts, n = sources("train"), data.held_out_documents
        return (mixed([part.skip(n) for part in parts]),
                mixed([part.take(n) for part in parts], stopping_strategy="all_exhausted_without_replacement"))
    return mixed(sources("train")), mixed(sources(data.validation_split))


def as_blocks(dataset, tokenizer, block_size: int, text_column: str = "text", split: str = "train"):
    """Training blocks from a split: text is tokenised and packed (`pack_text_dataset`); a split that already
    holds blocks (an `input_ids` column and no text column, e.g. pre-tokenized Parquet shards) is taken as it is,
    once its blocks are checked to be `block_size` long."""
    columns = dataset.column_names
    if columns is None or text_column in columns or "input_ids" not in columns:
        return pack_text_dataset(dataset, tokenizer, block_size, text_column, split)
    length = len(next(iter(dataset))["input_ids"])
    if length != block_size:
        raise UsageError(f"split {split!r} holds pre-tokenized blocks of {length} tokens, but block_size={block_size}; "
                         f"pass --block_size {length}, or rebuild the blocks at {block_size}.")
    return dataset


def pack_text_dataset(dataset, tokenizer, block_size: int, text_column: str = "text", split: str = "train"):
    """Tokenise a text dataset and pack it into blocks of `block_size` token ids, as transformers'
    run_clm example does: documents joined with the EOS token, the last partial block dropped.
    Documents with no usable text are skipped first (`usable_documents`). Works on a
    `datasets.Dataset` and on a streaming `datasets.IterableDataset` alike."""
    if tokenizer.eos_token_id is None:
        raise UsageError("the tokenizer has no eos_token; packing needs one to separate documents.")

    def tokenize_and_pack(batch):  # documents longer than the model's context are expected: they are cut into blocks
        documents = tokenizer(batch[text_column], verbose=False)["input_ids"]
        ids = [i for doc in documents for i in doc + [tokenizer.eos_token_id]]
        usable = len(ids) // block_size * block_size
        return {"input_ids": [ids[k:k + block_size] for k in range(0, usable, block_size)]}

    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise UsageError(f"text_column={text_column!r} is not a column of the dataset (columns: {columns}).")
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
            raise UsageError(no_text)
        return kept
    kept = dataset.filter(lambda document: has_text(document, text_column))
    if len(kept) == 0:
        raise UsageError(no_text)
    if len(kept) < len(dataset):
        logger.warning(f"{split}: skipped {len(dataset) - len(kept):,} of {len(dataset):,} documents with no usable "
                       f"text in column {text_column!r} (null, empty, whitespace-only, not a string or missing).")
    return kept

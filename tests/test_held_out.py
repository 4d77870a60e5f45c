"""A held-out split taken from mixed training datasets: each dataset's first documents are held out before
the mixing, so none comes back into training, even when the mixture restarts a smaller dataset."""

import json

import pytest

from hf_tst.arguments import DataArguments
from hf_tst.text import load_text


def write_dataset(folder, prefix: str, documents: int) -> str:
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": f"{prefix}{i}"}) + "\n" for i in range(documents)))
    return str(folder)


@pytest.mark.parametrize("streaming", [False, True])
def test_no_held_out_document_comes_back_into_the_training_mixture(tmp_path, streaming):
    large, small = write_dataset(tmp_path / "large", "a", 12), write_dataset(tmp_path / "small", "b", 4)
    data = DataArguments(dataset_name=[large, small], held_out_documents=2, streaming=streaming)
    train, held_out = load_text(data)
    train_texts = [document["text"] for document in train]
    held_out_texts = [document["text"] for document in held_out]
    assert sorted(held_out_texts) == ["a0", "a1", "b0", "b1"]  # the first two of each dataset, each once
    assert set(train_texts) == {f"a{i}" for i in range(2, 12)} | {"b2", "b3"}
    assert train_texts.count("b2") > 1  # the smaller dataset restarted (all_exhausted)...
    assert not set(train_texts) & set(held_out_texts)  # ...without its held-out documents


def test_pretokenized_parquet_blocks_are_read_as_they_are_and_a_block_size_mismatch_is_refused(tmp_path):
    """The GPU screen's carried data: uint16 blocks in Parquet (benchmarks/screen_data.py), read through 🤗
    datasets' Parquet loader and trained on without re-packing; blocks of another length are refused."""
    import datasets

    from hf_tst.text import as_blocks

    ids = [[(7 * row + k) % 8192 for k in range(16)] for row in range(10)]
    blocks = datasets.Dataset.from_dict({"input_ids": ids}).cast_column(
        "input_ids", datasets.Sequence(datasets.Value("uint16")))
    blocks.to_parquet(tmp_path / "train-00.parquet")
    train, held_out = load_text(DataArguments(train_files=str(tmp_path / "train-*.parquet"),
                                              validation_files=str(tmp_path / "train-00.parquet")))
    assert as_blocks(train, tokenizer=None, block_size=16)["input_ids"] == ids
    with pytest.raises(ValueError, match="pre-tokenized blocks of 16 tokens, but block_size=32; pass --block_size 16"):
        as_blocks(held_out, tokenizer=None, block_size=32, split="validation")

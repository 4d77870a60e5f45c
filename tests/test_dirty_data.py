"""Real corpora hold null, empty and whitespace-only documents and rows without the text column: they are
skipped, with one warning per split, and the blocks are those of the clean documents alone."""

import gzip
import json
from pathlib import Path

import pytest
from conftest import TINY_SHRUNK
from transformers import AutoTokenizer

from hf_tst.arguments import DataArguments
from hf_tst.scripts import train as train_script
from hf_tst.text import has_text, load_text, pack_text_dataset

REPO = Path(__file__).resolve().parents[1]
CLEAN = ["The first document has enough words to fill a block or two of tokens. " * 4,
         "A second one, also long enough to matter for the packing of blocks. " * 4,
         "And a third, so that the held-out split has text as well. " * 4]
DIRTY = [{"text": None}, {"text": ""}, {"text": "   \n\t "}, {"title": "a row without the text column"}]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def mixed(tmp_path: Path, name: str) -> str:
    """The clean documents with the dirty rows between them, in one file."""
    rows = [row for clean, dirty in zip(CLEAN, DIRTY, strict=False) for row in ({"text": clean}, dirty)] + DIRTY[3:]
    return write_jsonl(tmp_path / name, rows)


@pytest.mark.parametrize("streaming", [False, True])
def test_dirty_documents_are_skipped_and_the_blocks_are_the_clean_documents(tmp_path, streaming, caplog):
    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes" / "tokenizer")
    dirty = DataArguments(train_files=mixed(tmp_path, "train.jsonl"), validation_files=mixed(tmp_path, "val.jsonl"),
                          streaming=streaming)
    clean_file = write_jsonl(tmp_path / "clean.jsonl", [{"text": text} for text in CLEAN])
    clean = DataArguments(train_files=clean_file, validation_files=clean_file)
    with caplog.at_level("WARNING", logger="hf_tst.data"):
        blocks = [block["input_ids"] for block in pack_text_dataset(load_text(dirty)[0], tokenizer, 16)]
    expected = [block["input_ids"] for block in pack_text_dataset(load_text(clean)[0], tokenizer, 16)]
    assert blocks == expected and len(blocks) > 3
    warnings = [r.getMessage() for r in caplog.records if "no usable text" in r.getMessage()]
    if streaming:
        assert len(warnings) == 1 and warnings[0].startswith("train: skipping documents with no usable text")
    else:
        assert warnings == ["train: skipped 4 of 7 documents with no usable text in column 'text' (null, empty, "
                            "whitespace-only, not a string or missing)."]


@pytest.mark.parametrize("streaming", [False, True])
def test_a_split_without_usable_text_is_refused_naming_the_split_and_the_column(tmp_path, streaming):
    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes" / "tokenizer")
    empty = write_jsonl(tmp_path / "empty.jsonl", DIRTY)
    data = DataArguments(train_files=empty, validation_files=empty, streaming=streaming)
    with pytest.raises(ValueError, match="split 'validation' has no usable text in column 'text'"):
        pack_text_dataset(load_text(data)[1], tokenizer, 16, split="validation")


def test_only_non_blank_strings_count_as_text():
    assert has_text({"text": " a "}, "text")
    assert not any(has_text(row, "text") for row in [*DIRTY, {"text": 7}, {"text": ["a list"]}, {"text": b"bytes"}])


def test_the_recipe_trains_on_a_corpus_with_dirty_documents(tmp_path, monkeypatch):
    """The embedded held-out corpus with a null, an empty and a whitespace-only document after every
    tenth, as training and held-out data: the main job trains and reports a finite eval loss."""
    monkeypatch.chdir(REPO)
    with gzip.open(REPO / "recipes/data/python-docs/validation.jsonl.gz", "rt") as f:
        documents = [json.loads(line) for line in f]
    rows = [row for n, document in enumerate(documents) for row in [document, *(DIRTY if n % 10 == 0 else [])]]
    corpus = write_jsonl(tmp_path / "dirty.jsonl", rows)
    metrics = train_script.main([*TINY_SHRUNK, "--train_files", corpus, "--validation_files", corpus,
                                 "--max_steps", "4", "--eval_steps", "100", "--output_dir", str(tmp_path / "out")])
    assert 0 < metrics["eval_loss"] < 20

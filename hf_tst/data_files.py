"""Local data files (`--train_files`, `--validation_files`), each fault named with its file before any compute.

🤗 datasets and pyarrow read the files; what they report without saying which file (a broken JSON line, a byte
that is not UTF-8, an empty file, columns that differ between files, a Parquet file without the column or type
a run reads) is named here with the file and, where it applies, its line and byte:

- `check_data_files`, before loading: every file exists and is not empty, and its columns, as pyarrow (the reader
  🤗 datasets uses) infers them from its first block or Parquet footer, are those of the first train file and
  hold the text column (or, for Parquet blocks, `input_ids` as lists of integers).
- `named_file_faults`, around loading and packing: when 🤗 datasets fails to parse a file, the JSON lines files
  are read line by line for the first fault (`first_json_fault`), which is raised as a `UsageError` instead.

A healthy run reads the first block of each JSON lines file and the footer of each Parquet file, nothing more.
Remote paths (`hf://`, `s3://`, ...) are left to 🤗 datasets. A streamed corpus is checked as far as its first
block is read before training; a bad line further in stops the run as a runtime failure.
"""

import contextlib
import glob
import json
import os

import datasets
import fsspec
import pyarrow as pa
import pyarrow.json
import pyarrow.parquet as pq

from .errors import UsageError, causes

# What 🤗 datasets raises when it cannot parse a local file (the cause may be chained inside).
PARSE_ERRORS = (datasets.exceptions.DatasetGenerationError, datasets.table.CastError, pa.ArrowInvalid,
                UnicodeDecodeError, json.JSONDecodeError, StopIteration)


def expand(flag: str, patterns: list[str]) -> list[str]:
    """The local files `patterns` name, globs expanded (remote paths are not expanded); a pattern that names no
    file, or names a folder, is refused by its flag."""
    paths = []
    for pattern in patterns:
        if "://" in pattern:
            continue
        found = sorted(glob.glob(pattern, recursive=True))
        if not found:
            raise UsageError(f"{flag} {pattern}: no such file; pass existing JSON lines (.jsonl, .jsonl.gz) or "
                             "Parquet files (globs allowed).")
        folders = [path for path in found if os.path.isdir(path)]
        if folders:
            raise UsageError(f"{flag} {pattern}: {folders[0]} is a folder; pass its files, such as "
                             f"{os.path.join(folders[0], '*.jsonl')}.")
        paths += found
    return paths


def check_data_files(train_patterns: list[str], validation_patterns: list[str], text_column: str) -> list[str]:
    """The local files of a run's train and held-out splits; refuses, naming the file, one that cannot make them."""
    files = [(flag, path) for flag, patterns in (("--train_files", train_patterns),
                                                 ("--validation_files", validation_patterns))
             for path in expand(flag, patterns)]
    reference = None  # (path, columns) of the first file whose columns are known
    for flag, path in files:
        if os.path.getsize(path) == 0:
            raise UsageError(f"{flag} {path} is empty; remove it from {flag}, or fill it.")
        columns = parquet_columns(path, text_column) if path.endswith(".parquet") else json_columns(path, text_column)
        if columns is None:  # a JSON document, read and checked by 🤗 datasets
            continue
        if reference is None:
            reference = (path, columns)
        elif columns != reference[1]:
            raise UsageError(f"{flag} {path} has the columns {columns}, but {reference[0]} has {reference[1]}; give "
                             "every train and validation file the same columns.")
    return [path for _, path in files]


def json_columns(path: str, text_column: str) -> list[str] | None:
    """The columns of a JSON lines file, as pyarrow infers them from its first block; they must hold `text_column`.
    None for a file that is one JSON document (a list of records), which 🤗 datasets reads another way."""
    try:
        names = pyarrow.json.open_json(pa.input_stream(path, compression="detect")).schema.names
    except pa.ArrowInvalid as error:
        fault = first_json_fault([path])
        if fault is None and is_json_document(path):
            return None
        raise UsageError(fault or f"{path}: {error}") from None
    if text_column not in names:
        raise UsageError(f"{path} has no {text_column!r} field in its first documents (fields: {sorted(names)}); pass "
                         "--text_column with the field that holds the text.")
    return sorted(names)


def parquet_columns(path: str, text_column: str) -> list[str]:
    """The columns of a Parquet file (from its footer): pre-tokenized blocks (`input_ids`, lists of integers) or
    text (`text_column`, strings)."""
    try:
        schema = pq.read_schema(path)
    except pa.ArrowInvalid as error:
        raise UsageError(f"{path} is not a readable Parquet file ({error}); write it again.") from None
    if "input_ids" in schema.names:
        kind = schema.field("input_ids").type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)) or \
                not pa.types.is_integer(kind.value_type):
            raise UsageError(f"{path}: column input_ids is {kind}, not lists of integer token ids; write the blocks "
                             "as lists of integers (benchmarks/screen_data.py writes uint16).")
    elif text_column in schema.names:
        kind = schema.field(text_column).type
        kind = kind.value_type if pa.types.is_dictionary(kind) else kind
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
            raise UsageError(f"{path}: column {text_column!r} is {kind}, not text.")
    else:
        raise UsageError(f"{path} has neither input_ids (pre-tokenized blocks) nor a {text_column!r} column "
                         f"(columns: {schema.names}); pass --text_column with the column that holds the text.")
    return sorted(schema.names)


def is_json_document(path: str) -> bool:
    """Whether the file opens a JSON list (one document of records, not lines)."""
    with fsspec.open(path, "rb", compression="infer") as f:
        return f.read(4096).decode("utf-8-sig", errors="replace").lstrip().startswith("[")


def first_json_fault(paths: list[str]) -> str | None:
    """The first fault of the JSON lines files `paths`, in words naming the file, line and byte: a line that is not
    UTF-8, not JSON or not an object, or a file without a document; None when there is none. A file that opens a
    JSON list is one document, not lines, and is left to 🤗 datasets."""
    for path in paths:
        if is_json_document(path):
            continue
        found, byte = False, 0
        with fsspec.open(path, "rb", compression="infer") as lines:
            for number, raw in enumerate(lines, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as error:
                    return (f"{path} line {number}: byte {byte + error.start} (0x{raw[error.start]:02x}) is not UTF-8; "
                            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).")
                byte += len(raw)
                if not line.strip():
                    continue
                try:
                    document = json.loads(line)
                except json.JSONDecodeError as error:
                    return (f"{path} line {number}, column {error.colno}: not valid JSON ({error.msg}); fix or remove "
                            "it.")
                if not isinstance(document, dict):
                    return (f"{path} line {number} holds a JSON {type(document).__name__}, not an object of fields; "
                            "write one object per line, such as {\"text\": \"...\"}.")
                found = True
        if not found:
            return f"{path} holds no document (only blank lines); remove it from the files, or fill it."
    return None


@contextlib.contextmanager
def named_file_faults(paths: list[str]):
    """Run the `with` block (reading `paths` with 🤗 datasets); if it fails to parse them, raise the first fault of
    the JSON lines files among `paths` as a `UsageError` naming its file and line. Any other failure (a full
    cache disk, a fault not found) is raised as it is."""
    try:
        yield
    except UsageError:
        raise
    except Exception as error:
        parsing = any(isinstance(cause, PARSE_ERRORS) for cause in causes(error))
        fault = first_json_fault([path for path in paths if not path.endswith(".parquet")]) if parsing else None
        if fault is None:
            raise
        raise UsageError(fault) from error

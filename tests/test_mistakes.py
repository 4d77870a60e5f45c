"""The table of mistakes: every bad file, bad value and bad config a real corpus or user holds, through the
installed `hf-tst train` and through the recipe, gives one line naming the input, status 2 and no traceback, before
any compute. A failure during training (a full disk at a save) is another kind: status 1, the cause with its step,
and the traceback that explains it. The list of mistakes in docs/commands.md is this table."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import HF_TST, TINY_SHRUNK

REPO = Path(__file__).resolve().parents[1]
HF_TST_TRAIN = [HF_TST, "train"]
RECIPE = [sys.executable, "recipes/train.py"]
FAULTS = REPO / "benchmarks" / "fault_injection"
SAVED = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--tst_ratio", "0.5",
         "--eval_strategy", "no"]

# name: (flags after TINY_SHRUNK, what the one error line must say). {bad} is a folder of bad files, {run} a copy of
# a run saved at steps 2 and 4, damaged by the row's entry in DAMAGE.
MISTAKES = {
    "unknown flag": (["--tst_bag_sise", "4"], r"unknown flag --tst_bag_sise; did you mean --tst_bag_size\?"),
    "missing config": (["--config", "recipes/configs/tiny.yml"], r"--config recipes/configs/tiny\.yml: no such "
                                                                 r"file; did you mean recipes/configs/tiny\.yaml\?"),
    "bad ratio": (["--tst_ratio", "1.5"], r"tst_ratio must lie in \[0, 1\], got 1\.5"),
    "missing data file": (["--train_files", "no-such-file.jsonl"], r"--train_files no-such-file\.jsonl: no such file"),
    "broken JSON line": (["--train_files", "{bad}/broken.jsonl"],
                         r".*broken\.jsonl line 2, column \d+: not valid JSON \(.*\); fix or remove it\."),
    "broken JSON line, streamed": (["--train_files", "{bad}/broken.jsonl", "--streaming", "true"],
                                   r".*broken\.jsonl line 2, column \d+: not valid JSON"),
    "non-UTF-8 byte": (["--train_files", "{bad}/latin.jsonl"],
                       r".*latin\.jsonl line 2: byte 61 \(0xe9\) is not UTF-8; re-encode the file as UTF-8"),
    "empty file": (["--train_files", "{bad}/empty.jsonl"], r"--train_files .*empty\.jsonl is empty"),
    "columns differ between train and validation": (
        ["--validation_files", "{bad}/extra.jsonl"],
        r"--validation_files .*extra\.jsonl has the columns \['language', 'source', 'text'\], but .*\.jsonl\.gz has "
        r"\['source', 'text'\]"),
    "no text column": (["--train_files", "{bad}/content.jsonl"],
                       r".*content\.jsonl has no 'text' field in its first documents \(fields: \['content'\]\); pass "
                       "--text_column"),
    "Parquet without input_ids or text": (["--train_files", "{bad}/tokens.parquet", "--validation_files",
                                           "{bad}/tokens.parquet"], r".*tokens\.parquet has neither input_ids"),
    "Parquet blocks of floats": (["--train_files", "{bad}/floats.parquet", "--validation_files",
                                  "{bad}/floats.parquet"], r".*floats\.parquet: column input_ids is list<.*double>"),
    "config whose base is itself": (["--config", "{bad}/itself.yaml"],
                                    r"--config .*itself\.yaml: its base: chain comes back to .*itself\.yaml"),
    "configs that name each other": (["--config", "{bad}/a.yaml"],
                                     r"--config .*a\.yaml: its base: chain comes back to .*a\.yaml \(.*a\.yaml -> "
                                     r".*b\.yaml -> .*a\.yaml\)"),
    "block_size 0": (["--block_size", "0"], r"block_size=0: a row needs at least 2 tokens"),
    "block_size 1": (["--block_size", "1"], r"block_size=1: a row needs at least 2 tokens"),
    "block_size of one bag with batch folding": (["--block_size", "4", "--tst_fold", "batch", "--tst_bag_size", "4"],
                                                 r"block_size=4: tst_fold='batch' folds .* use a block size of 5"),
    "batch size 0": (["--per_device_train_batch_size", "0"], r"per_device_train_batch_size=0: it must be at least 1"),
    "accumulation 0": (["--gradient_accumulation_steps", "0"], r"gradient_accumulation_steps=0: it must be at least 1"),
    "max_steps 0": (["--max_steps", "0"], r"max_steps=0: give a positive number of optimizer steps"),
    "eval_steps 0": (["--eval_steps", "0"], r"eval_steps=0(\.0)?: it must be positive"),
    "tokenizer that does not exist": (["--tokenizer_name", "recipes/no-such-tokenizer"],
                                      r"--tokenizer_name recipes/no-such-tokenizer: nothing to load there"),
    "override that is not a number": (["--config_overrides", "hidden_size=abc"],
                                      r"--config_overrides 'hidden_size=abc': hidden_size takes an integer \(the "
                                      r"config has \d+\)"),
    "torn weights in the resumed checkpoint": ([*SAVED, "--output_dir", "{run}", "--resume_from_checkpoint",
                                                "{run}/checkpoint-4"], r".*checkpoint-4'? is not a complete "
                                                                       r"checkpoint: model\.safetensors is torn"),
    "torn optimizer.pt in the resumed checkpoint": ([*SAVED, "--output_dir", "{run}", "--resume_from_checkpoint",
                                                     "{run}/checkpoint-4"], r".*checkpoint-4'? is not a complete "
                                                                            r"checkpoint: optimizer\.pt is torn"),
    "torn data position in the resumed checkpoint": ([*SAVED, "--output_dir", "{run}", "--resume_from_checkpoint",
                                                      "{run}/checkpoint-4"],
                                                     r".*checkpoint-4'? is not a complete checkpoint: "
                                                     r"tst_data_state-0\.json is torn"),
}
DAMAGE = {"torn weights in the resumed checkpoint": "model.safetensors",
          "torn optimizer.pt in the resumed checkpoint": "optimizer.pt",
          "torn data position in the resumed checkpoint": "tst_data_state-0.json"}


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of the bad files and configs of MISTAKES."""
    folder = tmp_path_factory.mktemp("bad")
    (folder / "broken.jsonl").write_text('{"source": "a", "text": "one"}\n{"source": "b", "text": "two"\n')
    (folder / "latin.jsonl").write_bytes(b'{"source": "a", "text": "plain"}\n{"source": "b", "text": "caf\xe9"}\n')
    (folder / "empty.jsonl").write_text("")
    (folder / "content.jsonl").write_text('{"content": "text under another name"}\n')
    (folder / "extra.jsonl").write_text('{"language": "en", "source": "a", "text": "one more column"}\n')
    pq.write_table(pa.table({"tokens": [[1, 2, 3]]}), folder / "tokens.parquet")
    pq.write_table(pa.table({"input_ids": [[1.0, 2.0, 3.0]]}), folder / "floats.parquet")
    (folder / "itself.yaml").write_text("base: itself.yaml\ntst_ratio: 0.3\n")
    (folder / "a.yaml").write_text("base: b.yaml\n")
    (folder / "b.yaml").write_text("base: a.yaml\n")
    return folder


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A tiny run saved at steps 2 and 4, trained through the recipe in a subprocess."""
    folder = tmp_path_factory.mktemp("saved")
    result = subprocess.run([*RECIPE, *TINY_SHRUNK, *SAVED, "--output_dir", str(folder)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def tear(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:max(1, path.stat().st_size // 2)])


@pytest.mark.slow
@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_is_one_line_naming_it_with_status_2_through_hf_tst_train_and_the_recipe(mistake, bad, tmp_path,
                                                                                             request):
    flags, pattern = MISTAKES[mistake]
    run = tmp_path / "run"
    if mistake in DAMAGE:
        shutil.copytree(request.getfixturevalue("saved_run"), run)
        tear(run / "checkpoint-4" / DAMAGE[mistake])
    argv = [*TINY_SHRUNK, *[flag.format(bad=bad, run=run) for flag in flags]]
    if "--output_dir" not in flags:
        argv += ["--output_dir", str(tmp_path / "out")]
    routes = {"hf-tst train": HF_TST_TRAIN, "train.py": RECIPE}
    started = {prog: subprocess.Popen([*command, *argv], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
               for prog, command in routes.items()}  # both at once: half the wait
    for prog, process in started.items():
        out, err = process.communicate(timeout=300)
        errors = [line for line in (out + err).splitlines() if line.startswith(f"{prog}: ")]
        assert (process.returncode, len(errors), "Traceback" in out + err) == (2, 1, False), out + err
        assert re.fullmatch(f"{re.escape(prog)}: error: {pattern}.*", errors[0]), errors[0]


@pytest.mark.slow
def test_a_failure_during_training_is_status_1_with_its_cause_step_and_traceback(tmp_path):
    """A full disk at step 2's save (injected): not a usage mistake, so its traceback stays."""
    result = subprocess.run([*HF_TST_TRAIN, *TINY_SHRUNK, *SAVED, "--output_dir", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_TST_FAULT_FULL_DISK_AT": "2",
                                 "PYTHONPATH": str(FAULTS)})
    cause = [line for line in result.stderr.splitlines() if line.startswith("hf-tst train: ")]
    assert result.returncode == 1, result.stderr[-3000:]
    assert re.fullmatch(r"hf-tst train: failed after optimizer step 2: CheckpointSaveError: could not save the "
                        r"checkpoint of step 2 to .*checkpoint-2 \(No space left on device\).*", cause[0])
    assert "Traceback (most recent call last)" in result.stderr and "OSError: [Errno 28]" in result.stderr


def test_the_docs_list_of_mistakes_is_this_table():
    page = (REPO / "docs" / "commands.md").read_text()
    listed = re.search(r"<!-- mistakes -->(.*?)<!-- /mistakes -->", page, re.S).group(1)
    assert [" ".join(name.split()) for name in listed.strip().rstrip(".").split(";")] == list(MISTAKES)

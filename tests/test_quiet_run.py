"""A healthy run says nothing alarming: the main job prints no warning line (launcher defaults filled
in, DeepSpeed left unimported, packing quiet about long documents, no pinning without an accelerator)."""

import contextlib
import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from conftest import HF_TST, lines_besides_progress_bars, needs_deepspeed
from transformers import AutoTokenizer

from hf_tst.text import pack_text_dataset

REPO = Path(__file__).resolve().parents[1]


def warning_lines(console: str) -> list[str]:
    """The lines of a run's console that warn: Python's warnings, logged ones (transformers prefixes its
    logger's name, DeepSpeed the level), and accelerate's note on the launcher settings it defaulted."""
    return [line for line in re.split(r"[\r\n]", console)
            if re.search(r"(?i)warn|^\[transformers\]|defaults used instead", line)]


def fresh_environment(tmp_path: Path) -> dict:
    """A first run's environment: empty caches (so the corpus is tokenised) and no `accelerate config` file."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}


@pytest.mark.slow
def test_the_main_job_and_its_evaluation_print_no_warning_line(tmp_path):
    """The main job (`make run`), shortened to 60 steps and 32 held-out blocks: the same switch, evaluations,
    checkpoints (with rotation), model card and closing lines; then `hf-tst evaluate` of its output folder, with
    lm-eval, whose warnings (lm-eval's logger writes no level) leave stderr with nothing but progress bars."""
    result = subprocess.run(
        [HF_TST, "train", "--config", "recipes/configs/tiny.yaml", "--max_steps", "60",
         "--eval_steps", "30", "--save_steps", "30", "--max_eval_blocks", "32", "--output_dir", str(tmp_path / "run")],
        cwd=REPO, env=fresh_environment(tmp_path), capture_output=True, text=True, timeout=300)
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-3000:]
    assert "final eval loss" in result.stdout
    assert warning_lines(console) == []
    if importlib.util.find_spec("lm_eval") is None:  # the `eval` extra; the core wheel's tests stop here
        return
    evaluated = subprocess.run([HF_TST, "evaluate", str(tmp_path / "run"), "--limit", "20"], cwd=REPO,
                               env=fresh_environment(tmp_path), capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert warning_lines(evaluated.stdout) == [] and lines_besides_progress_bars(evaluated.stderr) == []


@needs_deepspeed
def test_a_run_without_deepspeed_never_imports_it(tmp_path):
    script = f"""
import sys
from conftest import packed_dataset, tiny_llama
from hf_tst import TSTConfig, TSTTrainer
args = TSTConfig(output_dir={str(tmp_path)!r}, max_steps=4, tst_ratio=0.5, per_device_train_batch_size=4,
                 save_steps=2, report_to="none", disable_tqdm=True)
trainer = TSTTrainer(model=tiny_llama(), args=args, train_dataset=packed_dataset(64, 12, 97))
trainer.train()
trainer.save_model()
print("deepspeed imported:", "deepspeed" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO / "tests", env=fresh_environment(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "deepspeed imported: False"
    assert "Setting accelerator" not in result.stderr


def test_packing_cuts_long_documents_without_the_tokenizers_length_warning():
    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes" / "tokenizer")
    long_document = "import this " * tokenizer.model_max_length  # longer than the model's context, as documents are
    with transformers_warnings() as plain:  # what a plain call logs, to show the capture sees it
        AutoTokenizer.from_pretrained(REPO / "recipes" / "tokenizer")(long_document)
    with transformers_warnings() as packing:
        blocks = pack_text_dataset(datasets.Dataset.from_dict({"text": [long_document]}), tokenizer, block_size=128)
    assert len(blocks) == (tokenizer.model_max_length * 2 + 1) // 128  # 2 tokens a repeat, and the EOS
    assert [message[:31] for message in plain] == ["Token indices sequence length i"] and packing == []


@contextlib.contextmanager
def transformers_warnings():
    """The messages transformers logs meanwhile (its loggers write to their own handler, not to the root)."""
    messages, handler = [], logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)
    try:
        yield messages
    finally:
        logging.getLogger("transformers").removeHandler(handler)

"""`hf-tst evaluate` runs the offline lm-eval suite on a checkpoint, quietly and leaving the folder clean; the suite's
items are well formed and its tasks declare what lm-eval would otherwise guess."""

import json
from pathlib import Path

import yaml
from conftest import lines_besides_progress_bars, needs_eval, run_hf_tst, tiny_llama
from transformers import AutoTokenizer

from hf_tst.evaluation import OFFLINE_TASKS, held_out_passages, write_offline_tasks

REPO = Path(__file__).resolve().parents[1]


def test_offline_suite_is_built_from_the_held_out_split(tmp_path):
    passages = held_out_passages()
    assert len(passages) >= 100
    folder = write_offline_tasks(str(tmp_path), passages)
    items = [json.loads(line) for line in (tmp_path / "pydocs_continuation.jsonl").read_text().splitlines()]
    assert len(items) == len(passages)
    for item, passage in zip(items, passages, strict=True):
        assert len(item["endings"]) == 4 and len(set(item["endings"])) == 4
        assert f"{item['context']} {item['endings'][item['label']]}" == passage  # the true continuation
    assert sorted({item["label"] for item in items}) == [0, 1, 2, 3]
    for task in OFFLINE_TASKS:
        config = yaml.safe_load((Path(folder) / f"{task}.yaml").read_text())
        assert config["dataset_path"] == "json" and Path(config["dataset_kwargs"]["data_files"]["test"]).is_absolute()
        assert config["num_fewshot"] == 0
        for metric in config["metric_list"]:
            assert set(metric) == {"metric", "aggregation", "higher_is_better"}, metric


@needs_eval
def test_hf_tst_evaluate_exits_0_prints_a_summary_and_no_warning_and_leaves_no_task_files(tmp_path):
    """Through the installed command: status 0, nothing on the console but progress bars, lm-eval's bootstrap
    note, the results table and where it went; the model folder gains the results files only."""
    checkpoint = tmp_path / "model"
    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes" / "tokenizer")
    tiny_llama(vocab_size=len(tokenizer)).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    before = {path.name for path in checkpoint.iterdir()}
    result = run_hf_tst("evaluate", str(checkpoint), "--limit", "20")
    assert result.returncode == 0, result.stderr[-3000:]
    assert lines_besides_progress_bars(result.stderr) == []
    table = (checkpoint / "results.md").read_text()
    assert lines_besides_progress_bars(result.stdout) == [
        "bootstrapping for stddev: perplexity", *table.splitlines(), f"results.json and results.md in {checkpoint}"]
    assert {path.name for path in checkpoint.iterdir()} - before == {"results.json", "results.md"}
    results = json.loads((checkpoint / "results.json").read_text())["results"]
    assert set(results) == set(OFFLINE_TASKS)
    assert 0.0 <= results["pydocs_continuation"]["acc,none"] <= 1.0
    assert 0.0 <= results["pydocs_cloze"]["acc,none"] <= 1.0
    # An untrained model spreads its bets over 8,192 tokens: log2(8192) = 13 bits per token, 3-4 bytes per token.
    assert 2.5 < results["pydocs_bpb"]["bits_per_byte,none"] < 5.5
    assert "| pydocs_continuation | acc_norm |" in table

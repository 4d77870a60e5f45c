"""recipes/evaluate.py runs the offline lm-eval suite on a checkpoint; the suite's items are well formed."""

import json
from pathlib import Path

import yaml
from conftest import load_recipe, needs_eval, tiny_llama
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


@needs_eval
def test_evaluate_recipe_writes_results_for_the_offline_suite(tmp_path):
    checkpoint = tmp_path / "model"
    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes" / "tokenizer")
    tiny_llama(vocab_size=len(tokenizer)).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    recipe = load_recipe("evaluate")
    recipe.main([str(checkpoint), "--limit", "20"])
    results = json.loads((checkpoint / "results.json").read_text())["results"]
    assert set(results) == set(OFFLINE_TASKS)
    assert 0.0 <= results["pydocs_continuation"]["acc,none"] <= 1.0
    assert 0.0 <= results["pydocs_cloze"]["acc,none"] <= 1.0
    # An untrained model spreads its bets over 8,192 tokens: log2(8192) = 13 bits per token, 3-4 bytes per token.
    assert 2.5 < results["pydocs_bpb"]["bits_per_byte,none"] < 5.5
    assert "| pydocs_continuation | acc_norm |" in (checkpoint / "results.md").read_text()

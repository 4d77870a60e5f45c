"""The main job, shrunk: `accelerate launch recipes/train.py --config recipes/configs/tiny.yaml` plus overrides."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PLOTS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("streaming", ["false", "true"])
def test_train_recipe_runs_both_phases_and_saves_a_plain_checkpoint(tmp_path, streaming):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no",
               "recipes/train.py", "--config", "recipes/configs/tiny.yaml",
               "--train_files", "recipes/data/python-docs/validation.jsonl.gz",  # small, for speed
               "--config_overrides", "hidden_size=32,intermediate_size=64,num_hidden_layers=1",
               "--max_steps", "6", "--tst_ratio", "0.5", "--eval_steps", "3", "--save_strategy", "no",
               "--max_eval_blocks", "8", "--logging_steps", "1", "--streaming", streaming, "--output_dir", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final eval loss" in result.stdout
    saved = json.loads((out / "config.json").read_text())
    assert saved["hidden_size"] == 32 and saved["model_type"] == "llama"  # the override reached the model
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    phases = [line for line in result.stdout.splitlines() + result.stderr.splitlines() if "tst_phase" in line]
    assert any("superposition" in p for p in phases) and any("recovery" in p for p in phases)
    assert json.loads((out / "eval_results.json").read_text())["eval_loss"] > 0
    card = (out / "README.md").read_text()  # the model card, with its loss curve beside it (the plots extra)
    assert "token-superposition-training" in card and (out / "loss_curve.png").exists() == PLOTS


def test_config_overrides_recompute_a_derived_head_width():
    """tiny-llama's config has no head_dim: 128 wide / 4 heads made it 32 when the config was built. Widened to
    768 with 12 heads, the model must have heads of 64 (as LlamaConfig(hidden_size=768, ...) has), not keep 32;
    an explicit head_dim in the overrides is kept."""
    from transformers import AutoTokenizer

    from hf_tst.arguments import ModelArguments
    from hf_tst.modeling import load_model

    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes" / "tokenizer")
    widened = "hidden_size=768,num_attention_heads=12,num_key_value_heads=12,num_hidden_layers=1"
    model = load_model(ModelArguments(model_config=str(REPO / "recipes/models/tiny-llama"),
                                      config_overrides=widened), tokenizer)
    assert model.config.head_dim == 64 and model.model.layers[0].self_attn.q_proj.out_features == 768
    model = load_model(ModelArguments(model_config=str(REPO / "recipes/models/tiny-llama"),
                                      config_overrides=widened + ",head_dim=32"), tokenizer)
    assert model.config.head_dim == 32 and model.model.layers[0].self_attn.q_proj.out_features == 384

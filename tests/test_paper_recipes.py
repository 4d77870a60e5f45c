"""The paper's recipes: each config resolves to the paper's settings, and dry-runs two steps of
both phases with the model shrunk and the data and tokenizer swapped for the embedded ones."""

import math
from pathlib import Path

import pytest
from conftest import load_recipe
from transformers import AutoConfig

from hf_tst.scripts import train as train_script

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "recipes" / "configs" / "paper"
CORPUS = REPO / "recipes" / "data" / "python-docs" / "validation.jsonl.gz"
# config: (model, s, r, weighting, learning rate, max_steps)
EXPECTED = {
    "smollm2-270m": ("smollm2-135m-untied", 6, 0.3, "uniform", 2e-3, 20_000),
    "smollm2-600m": ("smollm2-360m-untied", 6, 0.3, "uniform", 1e-3, 20_000),
    "smollm3-3b": ("smollm3-3b", 6, 0.3, "uniform", 2e-4, 20_000),
    "qwen3-moe-10b-a1b": ("qwen3-moe-10b-a1b", 16, 0.25, "power_law", 3e-4, 50_000),
}
CONFIGS = [f"{name}-{kind}" for name in EXPECTED for kind in ("tst", "baseline")]


def test_every_paper_config_is_covered():
    assert sorted(p.stem for p in PAPER.glob("*.yaml")) == sorted(CONFIGS + ["common"])


@pytest.mark.parametrize("config", CONFIGS)
def test_paper_config_has_the_papers_settings(config, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = ["--config", str(PAPER / f"{config}.yaml"), "--use_cpu", "true"]  # bf16 needs a GPU or use_cpu
    model_args, data_args, _, args = train_script.make_parser().parse_args_and_config(argv)
    model, s, r, weighting, lr, steps = EXPECTED[config.rsplit("-", 1)[0]]
    baseline = config.endswith("baseline")
    assert model_args.model_config == f"recipes/models/{model}"
    assert (args.tst_bag_size, args.tst_ratio, args.tst_weighting) == (s, 0.0 if baseline else r, weighting)
    assert (args.learning_rate, args.max_steps, args.adam_beta1, args.adam_beta2) == (lr, steps, 0.9, 0.95)
    assert args.lr_scheduler_type == "warmup_stable_decay" and args.warmup_steps == 2000
    assert args.lr_scheduler_kwargs == {"num_decay_steps": steps // 10, "decay_type": "linear"}
    assert data_args.streaming and data_args.block_size == 2048 and args.bf16
    tokens_per_step_on_8_gpus = data_args.block_size * args.per_device_train_batch_size * \
        args.gradient_accumulation_steps * 8
    assert tokens_per_step_on_8_gpus == pytest.approx(8e6 if "moe" in config else 2e6, rel=0.1)
    assert any("fineweb-edu" in name for name in data_args.dataset_name) == ("moe" in config)


def shrink(model_config: Path) -> str:
    """Config overrides that keep the architecture but make it tiny."""
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 8, "moe_intermediate_size": 16, "num_experts": 4,
             "num_experts_per_tok": 2}
    config = AutoConfig.from_pretrained(model_config)
    if getattr(config, "layer_types", None):  # per-layer types are fixed at construction: keep the depth
        del small["num_hidden_layers"]
    return ",".join(f"{key}={value}" for key, value in small.items() if hasattr(config, key))


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_paper_config_dry_runs_shrunk_on_the_embedded_corpus(config, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    model = EXPECTED[config.rsplit("-", 1)[0]][0]
    metrics = load_recipe("train").main([
        "--config", str(PAPER / f"{config}.yaml"),
        "--config_overrides", shrink(REPO / "recipes" / "models" / model),
        "--tokenizer_name", str(REPO / "recipes" / "tokenizer"), "--dataset_name", "",
        "--train_files", str(CORPUS), "--validation_files", str(CORPUS), "--streaming", "false",
        "--held_out_documents", "0", "--block_size", "32", "--max_eval_blocks", "4",
        "--max_steps", "4", "--warmup_steps", "1", "--lr_scheduler_kwargs", '{"num_decay_steps": 1}',
        "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--bf16", "false",
        "--use_cpu", "true", "--save_strategy", "no", "--disable_tqdm", "true", "--output_dir", str(tmp_path)])
    assert math.isfinite(metrics["eval_loss"])
    assert (tmp_path / "model.safetensors").exists() or (tmp_path / "model.safetensors.index.json").exists()

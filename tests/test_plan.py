"""`hf-tst plan`: a run's size, data and GPU-hours beside its baseline twin, before any compute, checked against
figures computed by hand from the shipped configs."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HF_TST, REPO
from transformers import AutoConfig, AutoModelForCausalLM

from hf_tst.arguments import ModelArguments
from hf_tst.plan import model_on_meta, parameters


def plan(*flags: str) -> str:
    result = subprocess.run([HF_TST, "plan", *flags], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={"HF_HUB_OFFLINE": "1", "PATH": str(Path(sys.executable).parent)})
    assert (result.returncode, result.stderr) == (0, ""), result.stderr[-2000:]
    return result.stdout


def test_the_paper_270m_run_reads_2_5_times_its_baselines_data():
    """8 GPUs x 16 rows x 8 accumulation x 2,048 tokens = 2,097,152 tokens a step; 20,000 steps, 6,000 of them
    superposed with s = 6: TST reads (6,000 x 6 + 14,000) x 2,097,152 = 104,857,600,000 tokens (the paper's 105B),
    the baseline 20,000 x 2,097,152 = 41,943,040,000 (42B)."""
    text = plan("--config", "recipes/configs/paper/smollm2-270m-tst.yaml", "--num_processes", "8",
                "--dataset_tokens", "5e10")
    assert "tokens per step: 2,097,152 (8 process(es) x 16 rows x 8 accumulation x 2048 tokens)" in text
    assert "TST: 20,000 steps (6,000 superposed, s=6); data tokens 75,497,472,000 + 29,360,128,000 = " \
           "104,857,600,000" in text
    assert "baseline: 20,000 steps (0 superposed, s=1); data tokens 0 + 41,943,040,000 = 41,943,040,000" in text
    assert "TST reads 2.50x the baseline's data (r*s + 1 - r = 0.3*6 + 0.7)" in text
    assert "epochs of the 50,000,000,000-token corpus: TST 2.10, baseline 0.84" in text
    assert "warning: TST repeats data that the baseline reads once" in text
    assert text.splitlines()[-1] == "verdict: inside the published regime"
    assert "  paper 270M: 270M parameters" in text.split("nearest published results:")[1].splitlines()[1]


def test_a_tiny_run_is_below_the_published_regime():
    text = plan("--config", "recipes/configs/tiny.yaml")
    assert "verdict: below the published regime" in text and "run the ladder first" in text


@pytest.mark.parametrize("overrides", [None, "tie_word_embeddings=true"])
def test_the_parameters_are_those_of_the_model_built_for_real(overrides):
    model_args = ModelArguments(model_config=str(REPO / "recipes/models/tiny-llama"), config_overrides=overrides)
    config = AutoConfig.from_pretrained(model_args.model_config)
    if overrides:
        config.update_from_string(overrides)
    real = AutoModelForCausalLM.from_config(config)
    embeddings = {id(p): p.numel() for m in (real.get_input_embeddings(), real.get_output_embeddings())
                  for p in m.parameters()}
    assert parameters(model_on_meta(model_args)) == (real.num_parameters(),
                                                     real.num_parameters() - sum(embeddings.values()))


def test_a_ten_billion_parameter_moe_is_planned_without_allocating_it():
    text = plan("--config", "recipes/configs/paper/qwen3-moe-10b-a1b-tst.yaml", "--num_processes", "64")
    total = int(text.splitlines()[0].split()[1].replace(",", ""))
    assert 9e9 < total < 12e9 and "paper 10B-A1B (MoE)" in text

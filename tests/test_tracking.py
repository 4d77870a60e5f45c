"""Training logs that trackers plot: numeric TST figures in every training log, model FLOPs counted
as an independent FLOP counter counts them."""

import glob
import time

import pytest
import torch
from conftest import packed_dataset, tiny_llama
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
    TrainerCallback,
)

from hf_tst import TSTTrainer
from hf_tst.throughput import ModelFlops, ThroughputMeter, peak_for_name


def test_tensorboard_event_file_holds_the_tst_scalars(make_config, tmp_path):
    pytest.importorskip("tensorboard", reason="needs tensorboard: pip install 'hf_tst[dev]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = tiny_llama()
    args = make_config(max_steps=6, tst_bag_size=4, tst_ratio=0.5, logging_steps=1, report_to="tensorboard",
                       tst_peak_tflops=0.001)
    TSTTrainer(model=model, args=args, train_dataset=packed_dataset(64, 16, 97)).train()
    (event_file,) = glob.glob(str(tmp_path / "**" / "events.out.tfevents*"), recursive=True)
    events = EventAccumulator(event_file)
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert [step for step, _ in scalars["train/mce_loss"]] == [1, 2, 3]  # the superposition phase's loss
    assert scalars["train/tst_bag_size"] == [(1, 4), (2, 4), (3, 4), (4, 1), (5, 1), (6, 1)]
    for name in ("tst_seconds_per_step", "tst_data_tokens_per_second", "tst_tflops_per_device", "tst_mfu"):
        assert [step for step, _ in scalars[f"train/{name}"]] == [1, 2, 3, 4, 5, 6]
        assert all(value > 0 for _, value in scalars[f"train/{name}"])
    for (_, tflops), (_, mfu) in zip(scalars["train/tst_tflops_per_device"], scalars["train/tst_mfu"], strict=True):
        assert mfu == pytest.approx(tflops / 0.001, rel=1e-5)


def test_seconds_per_step_is_the_logging_windows_wall_time_over_its_steps(make_config):
    """Against the wall clock between logs: each window of 3 steps, each slowed by 50 ms, logs at least
    50 ms a step and at most the time since the previous log over 3 (evaluation and saving fall outside)."""
    log_times = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(0.05)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if "tst_seconds_per_step" in logs:
                log_times.append((time.perf_counter(), logs["tst_seconds_per_step"]))

    trainer = TSTTrainer(model=tiny_llama(), args=make_config(max_steps=9, tst_bag_size=4, tst_ratio=1 / 3,
                                                              logging_steps=3),
                         train_dataset=packed_dataset(64, 16, 97), callbacks=[Clock()])
    started = time.perf_counter()
    trainer.train()
    assert len(log_times) == 3
    for (previous, _), (now, seconds_per_step) in zip([(started, None), *log_times[:-1]], log_times, strict=True):
        assert 0.05 <= seconds_per_step <= (now - previous) / 3


TINY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            attn_implementation="eager")  # eager attention: its score and value products are bmm's that torch counts


GPT2 = dict(vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0,
            attn_implementation="eager")
OPT = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
           word_embed_proj_dim=32, max_position_embeddings=64, attn_implementation="eager")
DEEPSEEK_V3 = dict(  # a dense first layer, then 2 of 8 routed experts plus a shared one; latent attention
    **{**TINY, "num_hidden_layers": 3, "num_key_value_heads": 4}, intermediate_size=64, first_k_dense_replace=1,
    moe_intermediate_size=16, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, n_group=1, topk_group=1,
    q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=8, v_head_dim=8,
    experts_implementation="eager")


@pytest.mark.parametrize("model_class, config", [
    (LlamaForCausalLM, LlamaConfig(**TINY, intermediate_size=64)),
    (LlamaForCausalLM, LlamaConfig(**TINY, intermediate_size=64, tie_word_embeddings=True)),  # the head still runs
    (Qwen3MoeForCausalLM, Qwen3MoeConfig(**TINY, head_dim=8, moe_intermediate_size=16, num_experts=8,
                                         num_experts_per_tok=2, experts_implementation="eager")),  # 2 of 8 experts
    (GPT2LMHeadModel, GPT2Config(**GPT2)),  # a learned position table (wpe) and a tied head
    (OPTForCausalLM, OPTConfig(**OPT)),  # OPT's offset position table
    (DeepseekV3ForCausalLM, DeepseekV3Config(**DEEPSEEK_V3)),  # n_routed_experts
], ids=["llama", "tied", "qwen3-moe", "gpt2", "opt", "deepseek-v3"])
def test_model_flops_formula_matches_torch_flop_counter(model_class, config):
    """6N + 12·layers·heads·head_dim·P per position, forward and backward, against torch's count of the
    matrix multiplies of a real training step (within 5%: N also holds the norms' and biases' few weights)."""
    torch.manual_seed(0)
    model = model_class(config)
    rows, positions = 3, 24
    ids = torch.randint(0, 97, (rows, positions))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    expected = ModelFlops(model)(rows, positions)
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.05)


def test_the_peak_table_matches_the_longest_name_first():
    assert peak_for_name("NVIDIA GH200 480GB") == 989.0 and peak_for_name("NVIDIA H100 PCIe") == 756.0
    assert peak_for_name("NVIDIA H100 80GB HBM3") == 989.0 and peak_for_name("NVIDIA GeForce RTX 4090") is None


@pytest.mark.parametrize("fold", ["sequence", "batch"])
def test_the_logged_step_flops_are_the_formula_in_both_phases(make_config, monkeypatch, fold):
    """tiny_llama: N = 24,800 parameters less the 97 x 32 token embedding = 21,696; attention 12 x 2 layers
    x 4 heads x 8 = 768 per position pair. 4 rows of 16 tokens, s=4: a sequence-folded superposition step
    and a recovery step both run 4 rows x 16 positions: 64 x (6 x 21,696 + 768 x 16) = 9,117,696 FLOPs; a
    batch-folded superposition step runs 16 rows x 4 positions: 64 x (6 x 21,696 + 768 x 4) = 8,527,872."""
    windows = []
    end_window = ThroughputMeter.end_window

    def recording_end_window(self, tokens_seen):
        windows.append(self.flops)
        return end_window(self, tokens_seen)

    monkeypatch.setattr(ThroughputMeter, "end_window", recording_end_window)
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, 16, 97),
                         args=make_config(max_steps=4, tst_ratio=0.5, tst_bag_size=4, tst_fold=fold, logging_steps=1))
    trainer.train()
    superposition = 9_117_696 if fold == "sequence" else 8_527_872
    assert windows[:4] == [superposition, superposition, 9_117_696, 9_117_696]

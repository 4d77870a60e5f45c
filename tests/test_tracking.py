"""Training logs that trackers plot: numeric TST figures in every training log, model FLOPs counted
as an independent FLOP counter counts them."""

import glob

import pytest
import torch
from conftest import packed_dataset, tiny_llama
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

from hf_tst import TSTTrainer
from hf_tst.throughput import ModelFlops


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
    for name in ("tst_data_tokens_per_second", "tst_tflops_per_device", "tst_mfu"):
        assert [step for step, _ in scalars[f"train/{name}"]] == [1, 2, 3, 4, 5, 6]
        assert all(value > 0 for _, value in scalars[f"train/{name}"])
    for (_, tflops), (_, mfu) in zip(scalars["train/tst_tflops_per_device"], scalars["train/tst_mfu"], strict=True):
        assert mfu == pytest.approx(tflops / 0.001, rel=1e-5)


TINY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            attn_implementation="eager")  # eager attention: its score and value products are bmm's that torch counts


@pytest.mark.parametrize("model_class, config", [
    (LlamaForCausalLM, LlamaConfig(**TINY, intermediate_size=64)),
    (LlamaForCausalLM, LlamaConfig(**TINY, intermediate_size=64, tie_word_embeddings=True)),  # the head still runs
    (Qwen3MoeForCausalLM, Qwen3MoeConfig(**TINY, head_dim=8, moe_intermediate_size=16, num_experts=8,
                                         num_experts_per_tok=2, experts_implementation="eager")),  # 2 of 8 experts
], ids=["dense", "tied", "moe"])
def test_model_flops_formula_matches_torch_flop_counter(model_class, config):
    """6N + 12·layers·heads·head_dim·P per position, forward and backward, against torch's count of the
    matrix multiplies of a real training step."""
    torch.manual_seed(0)
    model = model_class(config)
    rows, positions = 3, 24
    ids = torch.randint(0, 97, (rows, positions))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    expected = ModelFlops(model)(rows, positions)
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.015)

"""Bag means, next-bag targets, and the bagged forward on real architectures against a hand-written reference."""

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_superposition_step_matches_reference
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    Qwen3Config,
    Qwen3MoeConfig,
)

from hf_tst import TSTDataCollator, superpose_embeddings
from hf_tst.superpose import next_bag_targets, next_tokens_targets

VOCAB = 64
ARCHITECTURES = {
    "llama": LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2),
    "mistral": MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2),
    "qwen3": Qwen3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8),
    "qwen3_moe": Qwen3MoeConfig(hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_experts=4,
                                num_experts_per_tok=2),
    "gpt2": GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
                       attn_pdrop=0.0),
    "gpt_neox": GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              hidden_dropout=0.0, attention_dropout=0.0),
    "gemma": GemmaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8),
    "gemma3_text": Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, head_dim=8, sliding_window=4),
}


def test_bag_means_are_accumulated_in_float32_and_skip_padding():
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(50, 8).to(torch.bfloat16)
    ids = torch.randint(0, 50, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # row 1: last bag of 3 is padding only, the one before it half padding
    out = superpose_embeddings(embedding, ids, 3, mask)
    assert out.shape == (2, 4, 8) and out.dtype == torch.bfloat16
    vectors = embedding.weight.double()[ids]
    expected = vectors.view(2, 4, 3, 8).mean(2)
    expected[1, 3] = 0.0
    torch.testing.assert_close(out, expected.to(torch.bfloat16))
    mask[1, 7:] = 0
    partial = superpose_embeddings(embedding, ids, 3, mask)[1, 2]
    torch.testing.assert_close(partial, vectors[1, 6].to(torch.bfloat16))


def test_next_bag_targets_equal_the_papers_shifted_next_token_labels():
    s, L = 4, 5
    labels = torch.arange(2 * L * s).view(2, L * s)
    next_token = F.pad(labels[:, 1:], (0, 1), value=-100)           # y[k] = x[k+1]
    shifted = F.pad(next_token[:, s - 1:], (0, s - 1), value=-100)  # shift left by s-1
    torch.testing.assert_close(next_bag_targets(labels, s), shifted.view(2, L, s))


def test_output_only_targets_are_the_next_s_tokens():
    labels = torch.arange(6).view(1, 6)
    targets = next_tokens_targets(labels, 3)
    assert targets[0, 0].tolist() == [1, 2, 3]
    assert targets[0, 4].tolist() == [5, -100, -100]
    assert targets[0, 5].tolist() == [-100, -100, -100]


def test_collator_masks_pads_out_of_targets_and_makes_whole_bags():
    collate = TSTDataCollator(pad_token_id=0)
    rows = [{"input_ids": [5, 6, 7, 8, 9, 10, 11], "bag_size": 3},
            {"input_ids": [1, 2, 3, 4], "attention_mask": [1, 1, 1, 1], "bag_size": 3}]
    batch = collate(rows)
    assert batch["input_ids"].shape == (2, 9)                       # 7 tokens rounded up to whole bags
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert batch["bag_labels"][0].tolist() == [[8, 9, 10], [11, -100, -100], [-100, -100, -100]]
    assert batch["bag_labels"][1].tolist() == [[4, -100, -100], [-100] * 3, [-100] * 3]
    plain = collate([{"input_ids": [1, 2]}, {"input_ids": [3]}])
    assert plain["labels"].tolist() == [[1, 2], [3, -100]]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_superposition_step_on_architecture_matches_reference(name, make_config):
    torch.manual_seed(0)
    model_config = ARCHITECTURES[name]
    model_config.vocab_size = VOCAB
    assert_superposition_step_matches_reference(AutoModelForCausalLM.from_config(model_config).eval(), make_config)

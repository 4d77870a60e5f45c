"""Every decoder-only architecture in transformers' causal-LM mapping that a generic tiny config
can build offline runs a superposition step that matches the hand-written reference; the
architectures that cannot be superposed are refused with a clear message."""

import re
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from conftest import assert_superposition_step_matches_reference
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from hf_tst import TSTTrainer, multi_hot_cross_entropy
from hf_tst.head import FusedLMHead, fused_head_problem
from hf_tst.superpose import UNSUPPORTED_ARCHITECTURES, check_superposable

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, vocab_size=64, n_embd=32, n_layer=2, n_head=4, d_model=32, num_layers=2, ffn_dim=64,
            moe_intermediate_size=16, num_experts=4, num_local_experts=4, num_experts_per_tok=2, n_routed_experts=4,
            max_position_embeddings=64, n_positions=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            is_decoder=True)
MAX_PARAMETERS = 10_000_000
DOCS = (Path(__file__).resolve().parents[1] / "docs" / "architectures.md").read_text()
# The architectures docs/architectures.md names as passing: each must build and pass here.
CLAIMED = set(re.findall(r"`([\w.-]+)`", DOCS.split("pass, dense and MoE alike:", 1)[1].split("\n\n", 2)[1]))
MIN_CLAIMED = 130


def test_the_docs_claim_at_least_the_accepted_architectures_count():
    assert len(CLAIMED) >= MIN_CLAIMED and CLAIMED <= set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    assert f"{len(CLAIMED)} pass, dense and MoE alike" in DOCS  # the count the page states is the list's


def tiny_model(model_type: str):
    """The architecture at toy size, or a skip saying why a generic tiny config cannot build it; an
    architecture the docs claim may not skip."""
    try:
        return _tiny_model(model_type)
    except pytest.skip.Exception as skipped:
        if model_type in CLAIMED:
            pytest.fail(f"{model_type} is claimed in docs/architectures.md but no longer builds: {skipped.msg}")
        raise


def _tiny_model(model_type: str):
    try:
        config = AutoConfig.for_model(model_type)
        if getattr(config, "is_encoder_decoder", False) or any(
                hasattr(config, sub) for sub in ("vision_config", "audio_config", "encoder_config")):
            pytest.skip("not a text-only decoder")
        for name, value in TINY.items():
            try:
                if hasattr(config, name):
                    setattr(config, name, value)
            except Exception:  # noqa: BLE001 - a read-only or per-layer attribute: keep the default
                pass
        with torch.device("meta"):
            size = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
        if size > MAX_PARAMETERS:
            pytest.skip(f"the generic tiny config leaves {size:,} parameters")
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
        model(input_ids=torch.randint(3, 64, (2, 5)), use_cache=False)
    except pytest.skip.Exception:
        raise
    except Exception as error:  # noqa: BLE001 - any failure here is the generic config's, not TST's
        pytest.skip(f"a generic tiny config does not build or run: {type(error).__name__}")
    return model


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES))
def test_superposition_step_matches_reference(model_type, make_config):
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tiny_model(model_type)
        if model_type in UNSUPPORTED_ARCHITECTURES:
            with pytest.raises(ValueError, match=f"model_type '{model_type}' does not support input superposition"):
                TSTTrainer(model=model, args=make_config(max_steps=10, tst_bag_size=3))
        else:
            assert_superposition_step_matches_reference(model, make_config)


def test_per_layer_token_embeddings_are_refused():
    """Gemma-3n-style models look their per-layer embeddings up from the token ids (rule read off the config)."""
    from transformers import Gemma3nTextConfig

    model = torch.nn.Module()
    model.config = Gemma3nTextConfig()
    with pytest.raises(ValueError, match="'gemma3n_text' does not support input superposition: its per-layer "
                                         "embeddings"):
        check_superposable(model)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) - set(UNSUPPORTED_ARCHITECTURES)))
def test_fused_lm_head_matches_the_models_logits_or_is_not_used(model_type):
    """Where the fused head is accepted, its loss and gradients are those of the model's own logits;
    where it is not, the reason is given."""
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tiny_model(model_type)
    problem = fused_head_problem(model)
    if problem is not None:
        assert "nn.Linear" in problem or "not its LM head's output" in problem
        pytest.skip(f"falls back to its logits: {problem}")
    assert_fused_head_matches_logits(model)


def assert_fused_head_matches_logits(model, bag_size: int = 3, in_forward: bool = False):
    vocab = model.get_input_embeddings().num_embeddings
    ids, targets = torch.randint(3, vocab, (2, 5)), torch.randint(0, vocab, (2, 5, bag_size))
    targets[:, -1] = -100
    logits = model(input_ids=ids, use_cache=False).logits
    expected = multi_hot_cross_entropy(logits, targets, "power_law", reduction="sum")
    expected_grads = torch.autograd.grad(expected, [p for p in model.parameters() if p.requires_grad],
                                         allow_unused=True)
    fused = FusedLMHead(model, in_forward)
    with fused.running(fused.multi_hot_loss(targets, "power_law")):
        assert model(input_ids=ids, use_cache=False).logits.numel() == 0
    loss = fused.result()
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    fused.remove()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    for grad, grad_expected in zip(grads, expected_grads, strict=True):
        if grad_expected is not None:
            torch.testing.assert_close(grad, grad_expected, rtol=1e-3, atol=1e-5)


def test_soft_capped_logits_get_the_fused_head_and_scaled_logits_fall_back():
    """Gemma-2 soft-caps its logits: the fused head applies the cap itself. Granite divides its logits
    by `logits_scaling`: the probe sees the head's output is not the logits, and the model keeps them."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, GraniteConfig, GraniteForCausalLM

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8, vocab_size=64)
    torch.manual_seed(0)
    gemma = Gemma2ForCausalLM(Gemma2Config(**small, final_logit_softcapping=2.0)).eval()
    for in_forward in (False, True):
        assert fused_head_problem(gemma, in_forward) is None and FusedLMHead(gemma).softcap == 2.0
        assert_fused_head_matches_logits(gemma, in_forward=in_forward)
    granite = GraniteForCausalLM(GraniteConfig(**small, logits_scaling=4.0)).eval()
    for in_forward in (False, True):
        assert "not its LM head's output" in fused_head_problem(granite, in_forward)


@pytest.mark.parametrize("model_type", ["llama", "qwen3_moe", "gpt2"])
def test_the_loss_computed_inside_the_heads_forward_matches_the_models_logits(model_type):
    """The sharded path (`in_forward=True`: the loss runs inside the head's forward, where ZeRO-3 and FSDP2
    have gathered its weight) gives the loss and gradients of the model's own logits, as the deferred one does."""
    model = tiny_model(model_type)
    assert fused_head_problem(model, in_forward=True) is None
    assert_fused_head_matches_logits(model, in_forward=True)

"""The fused multi-hot cross-entropy, on logits and on hidden states + LM head, against the
paper's loop of s weighted standard cross-entropies."""

import pytest
import torch
import torch.nn.functional as F

from hf_tst import bag_weights, linear_multi_hot_cross_entropy, multi_hot_cross_entropy
from hf_tst.loss import WEIGHTINGS

RAW_WEIGHTS = {  # the paper's formulas for target i = 1..s, written out independently
    "uniform": lambda i: 1.0,
    "power_law": lambda i: 1.0 / i,
    "exponential": lambda i: float(torch.exp(torch.tensor(-float(i), dtype=torch.float64))),
    "first_token": lambda i: 1.0 if i == 1 else 0.0,
    "fitted_power_law": lambda i: 3.63 + 1.35 * i ** -1.25,
}


def loop_reference(logits, bags, weighting, ignore_index=-100):
    """sum_{n,i valid} w_i CE(z_n, y_ni) / sum_{n,i valid} w_i, one F.cross_entropy per bag slot, in float64."""
    s = bags.shape[-1]
    raw = [RAW_WEIGHTS[weighting](i) for i in range(1, s + 1)]
    w = [x / sum(raw) for x in raw]
    flat_logits = logits.reshape(-1, logits.shape[-1]).double()
    numerator, denominator = 0.0, 0.0
    for i in range(s):
        targets = bags.reshape(-1, s)[:, i]
        ce = F.cross_entropy(flat_logits, targets, ignore_index=ignore_index, reduction="sum")
        numerator = numerator + w[i] * ce
        denominator += w[i] * int((targets != ignore_index).sum())
    return numerator / denominator


def bags_with_ignored_targets(bag_size, weighting, vocab_size=50):
    bags = torch.randint(0, vocab_size, (3, 5, bag_size))
    bags[:, -1] = -100                       # the last position has no next bag
    bags[0, 1, bag_size - 1] = -100          # a padded target mid-sequence
    if weighting == "first_token":
        bags[1, 2, 0] = 7                    # keep at least one valid first target
    return bags


@pytest.mark.parametrize("kernel", ["eager", "compiled"])
@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
@pytest.mark.parametrize("bag_size", [1, 4, 6])
def test_mce_matches_loop_of_cross_entropies_with_ignored_targets(weighting, bag_size, kernel):
    torch.manual_seed(bag_size)
    logits = torch.randn(3, 5, 50, requires_grad=True)
    bags = bags_with_ignored_targets(bag_size, weighting)
    ours = multi_hot_cross_entropy(logits, bags, weighting, chunk_rows=4, kernel=kernel)  # chunks cut across rows
    reference = loop_reference(logits, bags, weighting)
    torch.testing.assert_close(ours.double(), reference, rtol=1e-6, atol=1e-6)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    (grad_ref,) = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kernel", ["eager", "compiled"])
@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
@pytest.mark.parametrize("bag_size", [1, 4, 6])
@pytest.mark.parametrize("softcap", [None, 3.0])
def test_linear_mce_matches_lm_head_then_loop_of_cross_entropies(weighting, bag_size, softcap, kernel):
    """The chunked LM head + MCE against nn.Linear logits (soft-capped as Gemma does) and the loop,
    for the loss and the gradients of the hidden states, the weight and the bias; the chunks' arithmetic
    run eagerly and compiled by torch.compile (the kernels it generates: C++ here, Triton on CUDA)."""
    torch.manual_seed(bag_size)
    hidden = torch.randn(3, 5, 16, requires_grad=True)
    weight, bias = torch.randn(50, 16, requires_grad=True), torch.randn(50, requires_grad=True)
    bags = bags_with_ignored_targets(bag_size, weighting)
    ours = linear_multi_hot_cross_entropy(hidden, weight, bags, weighting, bias=bias, softcap=softcap, chunk_rows=4,
                                          kernel=kernel)
    logits = F.linear(hidden, weight, bias)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    reference = loop_reference(logits, bags, weighting)
    torch.testing.assert_close(ours.double(), reference, rtol=1e-6, atol=1e-6)
    for grad_ours, grad_ref in zip(torch.autograd.grad(3 * ours, (hidden, weight, bias)),
                                   torch.autograd.grad(3 * reference, (hidden, weight, bias)), strict=True):
        torch.testing.assert_close(grad_ours, grad_ref.float(), rtol=1e-5, atol=1e-6)


def test_linear_mce_without_grad_or_with_a_frozen_head():
    """Evaluation (no grad) gives the same loss; a frozen head (LoRA) gets no gradient, the input still does."""
    torch.manual_seed(3)
    hidden, weight = torch.randn(4, 6, 8, requires_grad=True), torch.randn(30, 8)
    bags = torch.randint(0, 30, (4, 6, 3))
    with torch.no_grad():
        evaluated = linear_multi_hot_cross_entropy(hidden, weight, bags, chunk_rows=5)
    trained = linear_multi_hot_cross_entropy(hidden, weight, bags, chunk_rows=5)
    torch.testing.assert_close(evaluated, trained)
    trained.backward()
    reference = multi_hot_cross_entropy(F.linear(hidden, weight), bags)
    (grad_ref,) = torch.autograd.grad(reference, hidden)
    torch.testing.assert_close(hidden.grad, grad_ref)
    assert weight.grad is None


def test_linear_mce_under_bf16_autocast_matches_the_autocast_lm_head():
    """With float32 master weights under autocast, the head runs in bf16 as nn.Linear would, and the
    gradients come back in float32."""
    torch.manual_seed(4)
    hidden, weight = torch.randn(2, 8, 32, requires_grad=True), torch.randn(64, 32, requires_grad=True)
    bags = torch.randint(0, 64, (2, 8, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = linear_multi_hot_cross_entropy(hidden, weight, bags, chunk_rows=3)
        logits = F.linear(hidden, weight)
    assert logits.dtype == torch.bfloat16
    reference = loop_reference(logits, bags, "uniform")
    torch.testing.assert_close(ours.double(), reference, rtol=1e-4, atol=1e-4)
    grads = torch.autograd.grad(ours, (hidden, weight))
    grads_ref = torch.autograd.grad(reference, (hidden, weight))
    assert [g.dtype for g in grads] == [torch.float32, torch.float32]
    for grad_ours, grad_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad_ours, grad_ref.float(), rtol=2e-2, atol=2e-3)


def test_without_ignored_targets_it_is_the_papers_weighted_sum_of_means():
    torch.manual_seed(0)
    logits, bags = torch.randn(4, 7, 30), torch.randint(0, 30, (4, 7, 6))
    w = bag_weights("power_law", 6)
    paper = sum(w[i] * F.cross_entropy(logits.reshape(-1, 30), bags.reshape(-1, 6)[:, i]) for i in range(6))
    torch.testing.assert_close(multi_hot_cross_entropy(logits, bags, "power_law"), paper)


def test_sum_reduction_adds_up_across_micro_batches():
    torch.manual_seed(1)
    logits, bags = torch.randn(4, 6, 20), torch.randint(0, 20, (4, 6, 3))
    bags[:3, -1] = -100
    whole = multi_hot_cross_entropy(logits, bags, "exponential")
    parts = [multi_hot_cross_entropy(logits[i:i + 1], bags[i:i + 1], "exponential", reduction="sum") for i in range(4)]
    mass = (bag_weights("exponential", 3) * (bags != -100)).sum()
    torch.testing.assert_close(sum(parts) / mass, whole)


def test_bf16_logits_are_reduced_in_float32():
    torch.manual_seed(2)
    logits, bags = torch.randn(2, 3, 40) * 10, torch.randint(0, 40, (2, 3, 4))
    low = multi_hot_cross_entropy(logits.bfloat16(), bags)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, loop_reference(logits.bfloat16().float(), bags, "uniform").float())


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="weighting='cubic'"):
        multi_hot_cross_entropy(torch.randn(2, 5), torch.zeros(2, 3, dtype=torch.long), "cubic")
    with pytest.raises(ValueError, match="must agree"):
        multi_hot_cross_entropy(torch.randn(2, 5), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="must agree"):
        linear_multi_hot_cross_entropy(torch.randn(2, 4), torch.randn(5, 4), torch.zeros(3, 3, dtype=torch.long))


def test_a_second_backward_through_the_fused_loss_is_refused():
    """The gradients are computed once, in forward: a retained graph cannot run them twice."""
    logits = torch.randn(4, 10, requires_grad=True)
    loss = multi_hot_cross_entropy(logits, torch.randint(0, 10, (4, 2)))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice through the fused loss"):
        loss.backward()

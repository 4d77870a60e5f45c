"""GPU checks of the fused loss and the fused LM head in bf16, run where CUDA is present (the
device run in benchmarks/run_cuda.sh); skipped elsewhere. Independent of conftest.py, so that it
runs with `pytest --noconftest` on a machine without the test suite's data dependencies; the
reference is test_loss.py's float64 loop of cross-entropies."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from test_loss import loop_reference
from transformers import LlamaConfig, LlamaForCausalLM

from hf_tst import linear_multi_hot_cross_entropy, multi_hot_cross_entropy
from hf_tst.head import FusedLMHead

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


KERNELS = ["eager", "compiled"] + (["liger"] if importlib.util.find_spec("liger_kernel") else [])


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("bag_size", [1, 6])  # with kernel="liger", 1 takes Liger Kernel's fused linear CE
def test_chunked_head_under_bf16_autocast_matches_the_materialised_head(bag_size, kernel):
    torch.manual_seed(0)
    hidden = torch.randn(4096, 256, device="cuda", requires_grad=True)
    weight = (torch.randn(32768, 256, device="cuda") * 0.05).requires_grad_()
    bags = torch.randint(0, 32768, (4096, bag_size), device="cuda")
    bags[::7, -1] = -100
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ours = linear_multi_hot_cross_entropy(hidden, weight, bags, chunk_rows=1000, kernel=kernel)
        reference = loop_reference(F.linear(hidden, weight), bags, "uniform")
    grads = torch.autograd.grad(ours, (hidden, weight))
    grads_ref = torch.autograd.grad(reference, (hidden, weight))
    torch.testing.assert_close(ours.double(), reference, rtol=1e-3, atol=1e-3)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        assert grad.dtype == torch.float32
        torch.testing.assert_close(grad, grad_ref, rtol=2e-2, atol=2e-5)


@pytest.mark.parametrize("kernel", ["eager", "compiled"])
def test_fused_mce_on_bf16_logits_matches_the_loop(kernel):
    torch.manual_seed(1)
    logits = (torch.randn(2048, 50000, device="cuda") * 3).bfloat16().requires_grad_()
    bags = torch.randint(0, 50000, (2048, 6), device="cuda")
    ours = multi_hot_cross_entropy(logits, bags, chunk_rows=300, kernel=kernel)
    reference = loop_reference(logits, bags, "uniform")
    torch.testing.assert_close(ours.double(), reference, rtol=1e-5, atol=1e-5)
    (grad,) = torch.autograd.grad(ours, logits)
    (grad_ref,) = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(grad.float(), grad_ref.float(), rtol=1e-2, atol=1e-6)


def test_fused_head_of_a_llama_in_bf16_autocast_matches_its_logits():
    torch.manual_seed(2)
    config = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=4096)
    model = LlamaForCausalLM(config).cuda()
    ids, bags = torch.randint(0, 4096, (4, 64), device="cuda"), torch.randint(0, 4096, (4, 64, 6), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        expected = multi_hot_cross_entropy(model(input_ids=ids).logits, bags, reduction="sum")
        fused = FusedLMHead(model)
        with fused.running(fused.multi_hot_loss(bags, "uniform")):
            model(input_ids=ids)
    loss = fused.result()  # outside autocast, as the trainer calls it
    torch.testing.assert_close(loss, expected, rtol=2e-3, atol=1e-2)


def test_logged_peak_memory_covers_what_the_window_allocated():
    """`tst_peak_memory_gib` against a tensor of known size allocated in the window, and against the allocator."""
    from hf_tst.throughput import ThroughputMeter

    device = torch.device("cuda")
    model = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=64)).to(device)
    meter = ThroughputMeter(model, peak=None, device=device)
    meter.begin_step(tokens_seen=0)
    block = torch.empty(2**28, dtype=torch.uint8, device=device)  # 0.25 GiB
    figures = meter.end_window(tokens_seen=None)
    assert figures["tst_peak_memory_gib"] >= block.numel() / 2**30
    assert figures["tst_peak_memory_gib"] == torch.cuda.max_memory_allocated(device) / 2**30

"""Loss benchmark: the fused multi-hot cross-entropy against standard cross-entropy on the same
logits, and the chunked LM head + loss against a materialised LM head + cross-entropy.

Each figure is forward + backward, measured side by side in this one process:
  - CE: `F.cross_entropy(logits.float(), labels)`, what a transformers causal LM computes;
  - MCE: `hf_tst.multi_hot_cross_entropy(logits, bags)`, bags of s targets, each loss kernel;
  - loop: the paper's form, s weighted `F.cross_entropy` calls on the same float32 logits;
  - head+CE: `F.cross_entropy(F.linear(hidden, weight).float(), labels)`, the logits materialised;
  - chunked: `hf_tst.linear_multi_hot_cross_entropy(hidden, weight, bags)`, s = 1 and s = bag size, each
    loss kernel ("eager", "compiled"; for s = 1 on CUDA also "liger" when Liger Kernel is installed).

    python benchmarks/loss.py                       # CPU, float32, 1024 positions
    python benchmarks/loss.py --device cuda         # bfloat16, 8192 positions
"""

import argparse
import importlib.util
from functools import partial

import torch
import torch.nn.functional as F
from measure import configure_cpu_allocator, markdown_table, median_seconds, mib, peak_bytes, publish

from hf_tst import bag_weights, linear_multi_hot_cross_entropy, multi_hot_cross_entropy
from hf_tst.loss import KERNELS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    parser.add_argument("--positions", type=int, default=None, help="rows of logits (CPU 1024, CUDA 8192)")
    parser.add_argument("--hidden_size", type=int, default=576, help="D of the LM head (SmolLM2-135M's)")
    parser.add_argument("--vocab_sizes", type=int, nargs="+", default=[32768, 131072])
    parser.add_argument("--bag_sizes", type=int, nargs="+", default=[4, 6, 8, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", help="also write the tables (markdown) to this file")
    return parser.parse_args()


def forward_backward(loss_fn, *inputs):
    """A call running loss_fn(*inputs) forward and backward, then dropping the gradients it made."""
    def call():
        loss_fn(*inputs).backward()
        for tensor in inputs:
            tensor.grad = None
    return call


def standard_ce(logits, labels):
    return F.cross_entropy(logits.float(), labels)


def head_then_ce(hidden, weight, labels):
    return F.cross_entropy(F.linear(hidden, weight).float(), labels)


def paper_loop(logits, bags):
    """sum_i w_i CE(z, y_i): one standard cross-entropy per bag slot (uniform weights)."""
    z, w = logits.float(), bag_weights("uniform", bags.shape[-1])
    return sum(w[i] * F.cross_entropy(z, bags[:, i]) for i in range(bags.shape[-1]))


def kernels(device: torch.device, bag_size: int) -> list[str]:
    """The loss kernels to time: Liger Kernel only where it runs (s = 1, CUDA, installed)."""
    liger = bag_size == 1 and device.type == "cuda" and importlib.util.find_spec("liger_kernel") is not None
    return ["eager", "compiled"] + (["liger"] if liger else [])


def benchmark_vocab(vocab, positions, args, device, dtype):
    """Table rows for one vocabulary size: (logits-path rows, LM-head rows)."""
    def seconds(call):
        return median_seconds(call, device, repeats=args.repeats)

    logits = (torch.randn(positions, vocab, device=device) * 2).to(dtype).requires_grad_()
    labels = torch.randint(0, vocab, (positions,), device=device)
    hidden = torch.randn(positions, args.hidden_size, device=device, dtype=dtype, requires_grad=True)
    weight = (torch.randn(vocab, args.hidden_size, device=device) * 0.02).to(dtype).requires_grad_()
    ce = forward_backward(standard_ce, logits, labels)
    ce_time, ce_peak = seconds(ce), peak_bytes(ce, device)
    head_ce = forward_backward(head_then_ce, hidden, weight, labels)
    head_time, head_peak = seconds(head_ce), peak_bytes(head_ce, device)
    logits_rows, head_rows = [], []
    for bag_size in [1, *args.bag_sizes]:
        bags = torch.randint(0, vocab, (positions, bag_size), device=device)
        chunked = {kernel: forward_backward(partial(linear_multi_hot_cross_entropy, kernel=kernel), hidden, weight,
                                            bags) for kernel in kernels(device, bag_size)}
        chunked_times = {kernel: seconds(call) for kernel, call in chunked.items()}
        head_rows.append([f"{vocab:,}", str(bag_size), *(f"{chunked_times[k] / head_time:.2f}" if k in chunked_times
                                                         else "" for k in KERNELS),
                          mib(peak_bytes(chunked["eager"], device)), mib(head_peak)])
        if bag_size == 1:
            continue
        mce = {kernel: forward_backward(partial(multi_hot_cross_entropy, kernel=kernel), logits, bags)
               for kernel in ("eager", "compiled")}
        mce_times = {kernel: seconds(call) for kernel, call in mce.items()}
        loop = forward_backward(paper_loop, logits, bags)
        loop_time = seconds(loop)
        logits_rows.append([f"{vocab:,}", str(bag_size), *(f"{t / ce_time:.2f}" for t in mce_times.values()),
                            f"{loop_time / ce_time:.2f}", mib(peak_bytes(mce["eager"], device)), mib(ce_peak),
                            mib(peak_bytes(loop, device))])
        print(f"V={vocab} s={bag_size}: MCE/CE " + ", ".join(f"{k} {t / ce_time:.2f}" for k, t in mce_times.items())
              + "; chunked/head+CE " + ", ".join(f"{k} {t / head_time:.2f}" for k, t in chunked_times.items()),
              flush=True)
    return logits_rows, head_rows


def main():
    args = parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    positions = args.positions or (8192 if device.type == "cuda" else 1024)
    if device.type == "cpu":
        configure_cpu_allocator()
    torch.manual_seed(0)
    logits_rows, head_rows = [], []
    for vocab in args.vocab_sizes:
        rows = benchmark_vocab(vocab, positions, args, device, dtype)
        logits_rows += rows[0]
        head_rows += rows[1]
    setting = f"{device.type}, {str(dtype).removeprefix('torch.')}, {positions} positions, D={args.hidden_size}"
    report = "\n\n".join([
        f"Loss on materialised logits ({setting}); time is forward + backward, as a ratio to standard CE:",
        markdown_table(["V", "s", "MCE ÷ CE (eager)", "MCE ÷ CE (compiled)", "paper loop ÷ CE", "MCE peak", "CE peak",
                        "loop peak"], logits_rows),
        f"LM head + loss ({setting}); time as a ratio to head + CE, by loss kernel; the chunked head never holds "
        "more than one chunk of logits:",
        markdown_table(["V", "s", *(f"chunked ({kernel})" for kernel in KERNELS), "chunked peak", "head+CE peak"],
                       head_rows),
    ])
    publish(report, args.output)


if __name__ == "__main__":
    main()

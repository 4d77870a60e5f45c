"""Throughput figures for the training logs: seconds per optimizer step, data tokens per second, achieved
model TFLOP/s per device and MFU (model FLOPs utilisation), per logging window; and on CUDA the device's
peak allocated memory so far.

Model FLOPs of a training step, per position the model runs on (PaLM's appendix B, as torchtitan,
nanotron and LitGPT count them), forward and backward (3x the forward's 2 FLOPs per weight):

    6 * N  +  12 * n_layers * n_heads * head_dim * P

N is the number of weights used in matrix multiplies: every parameter except those of embedding
tables (lookups: the token embedding, and learned position tables such as GPT-2's `wpe` and OPT's),
plus the LM head even when it is tied to the token embedding; a mixture-of-experts layer counts only
the `num_experts_per_tok` of its routed experts (`num_experts`, `num_local_experts` or DeepSeek's
`n_routed_experts`) that each token visits, while shared experts and routers count in full. The second term is
attention's scores and weighted sum over a row of P positions (causal masking not discounted,
sliding windows not modelled). A superposition step runs the model on the same P positions as a
plain step (sequence folding) or on P / s (batch folding); the mean over a bag's s embeddings and the
multi-hot loss's extra terms are not counted. Recomputation (gradient checkpointing) is not counted
either: MFU measures useful work.
"""

import time

import torch
from torch import nn

# Peak dense bf16 TFLOP/s of one device, by a substring of torch.cuda.get_device_name.
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0}
ROUTED_EXPERTS = ("num_experts", "num_local_experts", "n_routed_experts")  # config names of a layer's routed experts


def peak_tflops(device: torch.device) -> float | None:
    """The device's peak dense bf16 TFLOP/s from `PEAK_TFLOPS`, or None when unknown (CPU included)."""
    return None if device.type != "cuda" else peak_for_name(torch.cuda.get_device_name(device))


def peak_for_name(device_name: str) -> float | None:
    """The peak of the longest `PEAK_TFLOPS` key within `device_name` ("NVIDIA GH200" is a GH200, not an H200)."""
    keys = [key for key in PEAK_TFLOPS if key in device_name]
    return PEAK_TFLOPS[max(keys, key=len)] if keys else None


def matmul_parameters(model) -> float:
    """N: the weights used in matrix multiplies per position (see the module docstring)."""
    config = model.config.get_text_config()
    experts = next((value for name in ROUTED_EXPERTS if (value := getattr(config, name, None))), None)
    active = getattr(config, "num_experts_per_tok", None)
    tables = {id(p) for module in model.modules() if isinstance(module, nn.Embedding) for p in module.parameters()}
    head = model.get_output_embeddings()
    total = 0.0
    for name, parameter in model.named_parameters():
        count = getattr(parameter, "ds_numel", parameter.numel())  # ZeRO-3 keeps the full size in ds_numel
        if id(parameter) in tables:
            continue
        total += count * active / experts if experts and active and ".experts." in f".{name}." else count
    if head is not None and id(head.weight) in tables:  # tied to the token embedding: a lookup there, a matmul here
        total += getattr(head.weight, "ds_numel", head.weight.numel())
    return total


def attention_flops_coefficient(model) -> float:
    """12 * n_layers * n_heads * head_dim: attention's FLOPs per position, per position of its row (P);
    6 * n_layers * n_heads * (qk_head_dim + v_head_dim) where queries and values differ in width
    (DeepSeek's multi-head latent attention); 0 for a config without those fields."""
    config = model.config.get_text_config()
    layers, heads = getattr(config, "num_hidden_layers", None), getattr(config, "num_attention_heads", None)
    if not (layers and heads):
        return 0.0
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    query_key, value = getattr(config, "qk_head_dim", None) or head_dim, getattr(config, "v_head_dim", None) or head_dim
    return 6.0 * layers * heads * (query_key + value)


class ModelFlops:
    """The training FLOPs of `rows` rows of `positions` positions through `model` (the module
    docstring's count), its parameters counted once."""

    def __init__(self, model):
        self.matmul_parameters = matmul_parameters(model)
        self.attention_coefficient = attention_flops_coefficient(model)

    def __call__(self, rows: int, positions: int) -> float:
        return rows * positions * (6.0 * self.matmul_parameters + self.attention_coefficient * positions)


class ThroughputMeter:
    """Model FLOPs and data tokens of one logging window, on this device.

    The trainer calls `begin_step` as each optimizer step starts fetching its batches, `add_micro_batch`
    for each micro-batch the model runs on, and `end_window` when it logs; evaluation and checkpointing
    between windows are not timed."""

    def __init__(self, model, peak: float | None, device: torch.device):
        self.model_flops = ModelFlops(model)
        self.peak = peak
        self.device = device
        self.window_start, self.tokens_at_start, self.flops, self.steps = None, 0, 0.0, 0

    def begin_step(self, tokens_seen: int) -> None:
        if self.window_start is None:
            self.window_start, self.tokens_at_start, self.flops, self.steps = time.perf_counter(), tokens_seen, 0.0, 0
        self.steps += 1

    def add_micro_batch(self, rows: int, positions: int) -> None:
        """A micro-batch of `rows` rows, each run on `positions` positions."""
        self.flops += self.model_flops(rows, positions)

    def end_window(self, tokens_seen: int | None) -> dict[str, float]:
        """`tst_seconds_per_step`, `tst_data_tokens_per_second` (all devices; when tokens are tracked),
        `tst_tflops_per_device` and, with a known peak, `tst_mfu` (a fraction) since `begin_step` opened the
        window; on CUDA `tst_peak_memory_gib`, the most this process has allocated on its device so far."""
        if self.window_start is None:
            return {}
        seconds = max(time.perf_counter() - self.window_start, 1e-9)
        figures = {"tst_seconds_per_step": seconds / self.steps, "tst_tflops_per_device": self.flops / seconds / 1e12}
        if self.device.type == "cuda":
            figures["tst_peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if self.peak:
            figures["tst_mfu"] = figures["tst_tflops_per_device"] / self.peak
        if tokens_seen is not None:
            figures["tst_data_tokens_per_second"] = (tokens_seen - self.tokens_at_start) / seconds
        self.window_start = None
        return figures

"""Multi-hot cross-entropy (MCE): the superposition phase's loss, fused with its gradient.

For logits z at a position and its target bag y_1..y_s with weights w_i:

    MCE(z, y) = sum_i w_i * (logsumexp(z) - z[y_i])
    dMCE/dz   = (sum_i w_i) * softmax(z) - sum_i w_i * onehot(y_i)

which equals the paper's loop of s weighted cross-entropies, but reads the logits once for the
loss and its gradient together: one log-softmax and s gathers per position, then the softmax
and its scaling in place (the paper's loop takes s log-softmaxes and s backward passes). Over
a batch, ignored targets (label -100: the missing next bag of the last position, padding) drop
out of numerator and denominator:

    loss = sum_{n,i valid} w_i * CE(z_n, y_{n,i}) / sum_{n,i valid} w_i

Both sums add up across micro-batches and devices, which is what exact gradient accumulation
needs: the trainer sums numerators and divides by the weight mass of the whole optimizer step.
Standard next-token cross-entropy is the case s = 1.

Two entry points share the arithmetic, one chunk of positions at a time, in float32:
`multi_hot_cross_entropy` takes logits the model has materialised; `linear_multi_hot_cross_entropy`
takes the hidden states and the LM head's weight, and never holds more than one chunk of logits.
Both compute the gradient during the forward pass when one is needed (as Liger Kernel's fused
linear cross-entropy does), so backward is a multiplication by the incoming scalar.
"""

import functools

import torch

from .extras import require

# Weight of target i = 1..s inside the next bag, before normalisation to sum 1.
WEIGHTINGS = {
    "uniform": lambda i: torch.ones_like(i),
    "power_law": lambda i: 1.0 / i,
    "exponential": lambda i: torch.exp(-i),
    "first_token": lambda i: (i == 1).to(i.dtype),
    # C0 + a * i^k, fitted by the paper to the mutual information between a token and the i-th next one.
    "fitted_power_law": lambda i: 3.63 + 1.35 * i.pow(-1.25),
}

# How a chunk's arithmetic runs (`tst_loss_kernel`): "eager", one PyTorch op per pass; "compiled", the same
# function compiled by torch.compile, which fuses the passes into generated kernels (Triton on CUDA, C++ on
# CPU); "liger", as "eager" but the chunked LM head's s = 1 case (recovery) on CUDA runs on Liger Kernel's
# fused linear cross-entropy.
KERNELS = ("eager", "compiled", "liger")

# Rows of logits the chunked paths hold at once: enough for CHUNK_ELEMENTS logits (64 MiB of float32), or
# 1/MAX_CHUNKS of all rows if that is more, so that large batches take few passes over the LM head's gradient.
CHUNK_ELEMENTS = 2**24
MAX_CHUNKS = 8


@functools.lru_cache(maxsize=64)
def bag_weights(weighting: str, bag_size: int, device: torch.device | None = None) -> torch.Tensor:
    """The `bag_size` target weights of `weighting`, in float32, summing to 1 (cached: do not modify)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r} is unknown; choose one of {', '.join(WEIGHTINGS)}.")
    position = torch.arange(1, bag_size + 1, dtype=torch.float32, device=device)
    weights = WEIGHTINGS[weighting](position)
    return weights / weights.sum()


def valid_target_weights(target_bags: torch.Tensor, weighting: str = "uniform", ignore_index: int = -100):
    """Per-target weights of `target_bags` (..., s), zero where the target is ignored."""
    weights = bag_weights(weighting, target_bags.shape[-1], target_bags.device)
    return weights * (target_bags != ignore_index)


def _chunk_loss_and_grad(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, softcap: float | None,
                         need_grad: bool, grad_into: torch.Tensor | None = None):
    """Summed MCE of a chunk of logits (n, V) against `targets` (n, s) with `weights` (n, s), in
    float32, and its gradient with respect to the chunk when `need_grad`: written into `grad_into`
    (any float dtype) if given, else returned in float32. Three passes over the chunk: log-softmax,
    exp in place, and the scaling by the weight mass (in place, or into `grad_into`)."""
    z = logits if softcap is None else softcap * torch.tanh(logits.float() / softcap)  # Gemma's soft-capping
    log_probs = torch.log_softmax(z, dim=-1, dtype=torch.float32)
    loss = -(log_probs.gather(-1, targets) * weights).sum()
    if not need_grad:
        return loss, None
    mass = weights.sum(dim=-1, keepdim=True)                 # the position's weight mass (0: nothing to predict)
    grad = log_probs.exp_()                                  # softmax
    grad.scatter_add_(-1, targets, -weights / mass.clamp(min=torch.finfo(torch.float32).tiny))
    if softcap is not None:
        grad.mul_(1 - (z.float() / softcap).square())       # d(c tanh(x/c))/dx
    # mass * softmax - weights on the bag's targets
    return loss, grad.mul_(mass) if grad_into is None else torch.mul(grad, mass, out=grad_into)


@functools.cache
def _compiled_chunk_loss_and_grad():
    return torch.compile(_chunk_loss_and_grad, dynamic=True, fullgraph=True)


def _chunk_function(kernel: str):
    """`_chunk_loss_and_grad` as `kernel` runs it."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r} is unknown; choose one of {', '.join(KERNELS)}.")
    return _compiled_chunk_loss_and_grad() if kernel == "compiled" else _chunk_loss_and_grad


def _chunks(rows: int, vocab_size: int, chunk_rows: int | None):
    step = chunk_rows or max(1, CHUNK_ELEMENTS // vocab_size, -(-rows // MAX_CHUNKS))
    return (slice(start, min(start + step, rows)) for start in range(0, rows, step))


# Both Functions keep their gradients on ctx rather than in save_for_backward and hand them over in
# backward, so autograd can take the tensors as they are instead of copying them into `.grad`.
_USED_TWICE = ("backward ran twice through the fused loss, whose gradients are computed once in forward; "
               "run forward again (or set tst_fused_lm_head=False) instead of retain_graph=True.")


class _FusedMultiHotCrossEntropy(torch.autograd.Function):
    """Summed MCE of materialised logits (N, V); the gradient is written during forward."""

    @staticmethod
    def forward(ctx, logits, targets, weights, softcap, chunk_rows, kernel):
        chunk_loss_and_grad = _chunk_function(kernel)
        grad_logits = torch.empty_like(logits) if logits.requires_grad else None
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for rows in _chunks(logits.shape[0], logits.shape[1], chunk_rows):
            loss, _ = chunk_loss_and_grad(logits[rows], targets[rows], weights[rows], softcap,
                                           grad_logits is not None, None if grad_logits is None else grad_logits[rows])
            total += loss
        ctx.grads = (grad_logits,)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        (grad_logits,) = _take_grads(ctx)
        return _scaled(grad_logits, grad_output), None, None, None, None, None


class _FusedLinearMultiHotCrossEntropy(torch.autograd.Function):
    """Summed MCE of hidden (N, D) @ weight (V, D)^T + bias, one chunk of rows at a time; the
    gradients of hidden, weight and bias are accumulated during forward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, weights, softcap, chunk_rows, kernel):
        # Matmuls run in the autocast dtype when autocast is on (as the model's own LM head would), else in
        # the hidden states' dtype; gradients are kept in each input's own dtype.
        device_type = hidden.device.type
        compute_dtype = (torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type)
                         else hidden.dtype)
        w = weight.to(compute_dtype)
        b = None if bias is None else bias.to(compute_dtype)
        grad_hidden = torch.empty_like(hidden) if hidden.requires_grad else None
        grad_weight = torch.zeros_like(weight) if weight.requires_grad else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if bias is not None and bias.requires_grad else None
        need_grad = any(g is not None for g in (grad_hidden, grad_weight, grad_bias))
        chunk_loss_and_grad = _chunk_function(kernel)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        with torch.autocast(device_type, enabled=False):
            for rows in _chunks(hidden.shape[0], weight.shape[0], chunk_rows):
                h = hidden[rows].to(compute_dtype)
                logits = h @ w.T if b is None else torch.addmm(b, h, w.T)
                grad_into = None if logits.dtype == torch.float32 else torch.empty_like(logits)
                loss, grad = chunk_loss_and_grad(logits, targets[rows], weights[rows], softcap, need_grad, grad_into)
                total += loss
                if not need_grad:
                    continue
                if grad_hidden is not None:
                    grad_hidden[rows] = grad @ w
                if grad_weight is not None and grad_weight.dtype == compute_dtype:
                    grad_weight.addmm_(grad.T, h)
                elif grad_weight is not None:  # float32 master weight under autocast
                    grad_weight += grad.T @ h
                if grad_bias is not None:
                    grad_bias += grad.float().sum(dim=0)
        ctx.grads = (grad_hidden, grad_weight, None if grad_bias is None else grad_bias.to(bias.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grads = [_scaled(grad, grad_output) for grad in _take_grads(ctx)]
        return (*grads, None, None, None, None, None)


def _take_grads(ctx) -> tuple:
    grads, ctx.grads = ctx.grads, None
    if grads is None:
        raise RuntimeError(_USED_TWICE)
    return grads


def _scaled(grad: torch.Tensor | None, grad_output: torch.Tensor) -> torch.Tensor | None:
    """`grad` times the incoming scalar gradient, in place. (Always: testing for 1 would wait on the device.)"""
    return None if grad is None else grad.mul_(grad_output.to(grad.dtype))


def _flatten_targets(target_bags: torch.Tensor, leading_shape: torch.Size, weighting: str, ignore_index: int):
    if target_bags.shape[:-1] != leading_shape:
        raise ValueError(f"the model's positions {tuple(leading_shape)} and target_bags {tuple(target_bags.shape)} "
                         "must agree on every dimension but the last.")
    weights = valid_target_weights(target_bags, weighting, ignore_index)
    targets = target_bags.masked_fill(target_bags == ignore_index, 0)
    s = target_bags.shape[-1]
    return targets.reshape(-1, s), weights.reshape(-1, s)


def _reduce(total: torch.Tensor, weights: torch.Tensor, reduction: str) -> torch.Tensor:
    return total if reduction == "sum" else total / weights.sum()


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}.")


def multi_hot_cross_entropy(
    logits: torch.Tensor,
    target_bags: torch.Tensor,
    weighting: str = "uniform",
    ignore_index: int = -100,
    reduction: str = "mean",
    softcap: float | None = None,
    chunk_rows: int | None = None,
    kernel: str = "eager",
) -> torch.Tensor:
    """Weighted multi-hot cross-entropy of `logits` (..., V) against `target_bags` (..., s).

    `reduction="mean"` divides by the weight mass of the valid targets (NaN when there are
    none, like `F.cross_entropy`); `"sum"` returns the numerator, for callers that normalise over
    a larger batch (gradient accumulation). `softcap` c applies c * tanh(logits / c) first. The
    result is float32 whatever the logits' dtype; no float32 copy of all the logits is made.
    `kernel` says how each chunk's arithmetic runs (`KERNELS`); the numerics are the same.
    """
    _check_reduction(reduction)
    targets, weights = _flatten_targets(target_bags, logits.shape[:-1], weighting, ignore_index)
    flat = logits.reshape(-1, logits.shape[-1])
    total = _FusedMultiHotCrossEntropy.apply(flat, targets, weights, softcap, chunk_rows, kernel)
    return _reduce(total, weights, reduction)


def linear_multi_hot_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target_bags: torch.Tensor,
    weighting: str = "uniform",
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    softcap: float | None = None,
    chunk_rows: int | None = None,
    kernel: str = "eager",
) -> torch.Tensor:
    """`multi_hot_cross_entropy(hidden @ weight.T + bias, target_bags, ...)` without materialising
    the (positions x vocabulary) logits: `hidden` (..., D), `weight` (V, D) as in `nn.Linear`.

    Rows are processed `chunk_rows` at a time (default: `CHUNK_ELEMENTS` logits, or 1/`MAX_CHUNKS`
    of the rows if that is more).
    With s = 1 this is the standard cross-entropy of an LM head; with `kernel="liger"` that case runs
    on Liger Kernel's fused linear cross-entropy for CUDA tensors (`pip install hf_tst[gpu]`).
    """
    _check_reduction(reduction)
    targets, weights = _flatten_targets(target_bags, hidden.shape[:-1], weighting, ignore_index)
    flat = hidden.reshape(-1, hidden.shape[-1])
    if kernel == "liger" and targets.shape[-1] == 1 and flat.is_cuda:
        liger = require("liger_kernel.transformers.functional", "gpu", "kernel='liger'")
        total = liger.liger_fused_linear_cross_entropy(flat, weight, target_bags.reshape(-1), bias,
                                                       ignore_index=ignore_index, reduction="sum", softcap=softcap)
        return _reduce(total.float(), weights, reduction)
    total = _FusedLinearMultiHotCrossEntropy.apply(flat, weight, bias, targets, weights, softcap, chunk_rows, kernel)
    return _reduce(total, weights, reduction)

"""Multi-hot cross-entropy (MCE): the superposition phase's loss.

For logits z at a position and its target bag y_1..y_s with weights w_i:

    MCE(z, y) = sum_i w_i * (logsumexp(z) - z[y_i])

which equals the paper's loop of s weighted cross-entropies, but needs one logsumexp per
position instead of s log-softmaxes. Over a batch, ignored targets (label -100: the missing
next bag of the last position, padding) drop out of numerator and denominator:

    loss = sum_{n,i valid} w_i * CE(z_n, y_{n,i}) / sum_{n,i valid} w_i

Both sums add up across micro-batches and devices, which is what exact gradient accumulation
needs: the trainer sums numerators and divides by the weight mass of the whole optimizer step.
"""

import torch

# Weight of target i = 1..s inside the next bag, before normalisation to sum 1.
WEIGHTINGS = {
    "uniform": lambda i: torch.ones_like(i),
    "power_law": lambda i: 1.0 / i,
    "exponential": lambda i: torch.exp(-i),
    "first_token": lambda i: (i == 1).to(i.dtype),
    # C0 + a * i^k, fitted by the paper to the mutual information between a token and the i-th next one.
    "fitted_power_law": lambda i: 3.63 + 1.35 * i.pow(-1.25),
}


def bag_weights(weighting: str, bag_size: int, device: torch.device | None = None) -> torch.Tensor:
    """The `bag_size` target weights of `weighting`, in float32, summing to 1."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r} is unknown; choose one of {', '.join(WEIGHTINGS)}.")
    position = torch.arange(1, bag_size + 1, dtype=torch.float32, device=device)
    weights = WEIGHTINGS[weighting](position)
    return weights / weights.sum()


def valid_target_weights(target_bags: torch.Tensor, weighting: str = "uniform", ignore_index: int = -100):
    """Per-target weights of `target_bags` (..., s), zero where the target is ignored."""
    weights = bag_weights(weighting, target_bags.shape[-1], target_bags.device)
    return weights * (target_bags != ignore_index)


def multi_hot_cross_entropy(
    logits: torch.Tensor,
    target_bags: torch.Tensor,
    weighting: str = "uniform",
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Weighted multi-hot cross-entropy of `logits` (..., V) against `target_bags` (..., s).

    `reduction="mean"` divides by the weight mass of the valid targets (NaN when there are
    none, like `F.cross_entropy`); `"sum"` returns the numerator, for callers that normalise over
    a larger batch (gradient accumulation).
    """
    if logits.shape[:-1] != target_bags.shape[:-1]:
        raise ValueError(f"logits {tuple(logits.shape)} and target_bags {tuple(target_bags.shape)} must agree "
                         "on every dimension but the last.")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}.")
    logits = logits.float()
    weights = valid_target_weights(target_bags, weighting, ignore_index)
    log_normaliser = torch.logsumexp(logits, dim=-1, keepdim=True)                   # (..., 1)
    targets = target_bags.masked_fill(target_bags == ignore_index, 0)
    target_logits = logits.gather(-1, targets)                                       # (..., s)
    total = ((log_normaliser - target_logits) * weights).sum()
    return total if reduction == "sum" else total / weights.sum()


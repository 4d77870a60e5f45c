"""Folding tokens into bags: bag-mean input embeddings, next-bag targets, and a bagged forward
pass that works on any transformers causal LM without touching the model.

A data row of N = L*s tokens becomes L bags B_j = x[j*s : j*s+s]. The model's input at position j
is the mean of the bag's input embeddings; its target is the next bag B_{j+1}.
"""

import torch
from torch import nn

from .errors import UsageError

IGNORE_INDEX = -100

# Causal LMs whose forward reads the token ids beyond the input embedding: a bag has no single id,
# so the bagged forward would silently compute something else. Found by tests/test_architectures.py.
UNSUPPORTED_ARCHITECTURES = {
    "cpmant": "CPM-Ant derives its segments and attention mask from the token ids inside its forward",
    "deepseek_v4": "DeepSeek-V4 routes tokens to experts by token id (hash routing)",
    "xlnet": "XLNet is a permutation language model, not a causal decoder over positions",
}


def check_superposable(model: nn.Module) -> None:
    """Refuse, before any compute, an architecture whose input cannot be superposed."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    reason = UNSUPPORTED_ARCHITECTURES.get(model_type)
    if reason is None and getattr(config, "hidden_size_per_layer_input", 0):
        reason = "its per-layer embeddings (Gemma-3n/Gemma-4 style) are looked up from the token ids"
    if reason is not None:
        raise UsageError(f"model_type {model_type!r} does not support input superposition: {reason}. Train it "
                         "with tst_superpose='output' (plain input, next-bag targets) or tst_ratio=0.")


def superpose_embeddings(
    embedding_module: nn.Module,
    input_ids: torch.Tensor,
    bag_size: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean input embedding of each bag of `bag_size` consecutive tokens.

    `input_ids` (B, L*s) -> (B, L, D). The mean is accumulated in float32 and cast back to the
    embedding's dtype. Tokens where `attention_mask` is 0 (padding) stay out of the mean; a bag
    with no real token gets a zero vector (the caller masks it out of attention).
    """
    batch, length = input_ids.shape
    if length % bag_size:
        raise ValueError(f"input_ids has {length} tokens per row, not a multiple of bag_size={bag_size}; "
                         "pad rows to a multiple of the bag size.")
    embeds = embedding_module(input_ids)
    bags = embeds.float().view(batch, length // bag_size, bag_size, -1)
    if attention_mask is None:
        return bags.mean(dim=2).to(embeds.dtype)
    real = attention_mask.view(batch, length // bag_size, bag_size, 1).to(torch.float32)
    summed = (bags * real).sum(dim=2)
    return (summed / real.sum(dim=2).clamp(min=1.0)).to(embeds.dtype)


def bag_attention_mask(attention_mask: torch.Tensor, bag_size: int) -> torch.Tensor:
    """(B, L*s) token mask -> (B, L) bag mask: a bag is attended to if it holds any real token."""
    batch, length = attention_mask.shape
    return attention_mask.view(batch, length // bag_size, bag_size).any(dim=-1).to(attention_mask.dtype)


def next_bag_targets(labels: torch.Tensor, bag_size: int) -> torch.Tensor:
    """Targets of bagged positions: (B, L*s) token labels -> (B, L, s), row j holding bag j+1.

    The last position has no next bag: its targets are IGNORE_INDEX. Same as shifting next-token
    labels left by s-1 and reshaping to (L, s), as the paper states it.
    """
    batch, length = labels.shape
    bags = labels.view(batch, length // bag_size, bag_size)
    missing = torch.full_like(bags[:, :1], IGNORE_INDEX)
    return torch.cat([bags[:, 1:], missing], dim=1)


def next_tokens_targets(labels: torch.Tensor, bag_size: int) -> torch.Tensor:
    """Targets of unbagged positions predicting the next bag of s tokens: (B, N) -> (B, N, s).

    Row t holds labels[t+1 : t+1+s], IGNORE_INDEX past the end (the 'output-only' ablation).
    """
    padded = nn.functional.pad(labels, (0, bag_size), value=IGNORE_INDEX)
    return padded.unfold(1, bag_size, 1)[:, 1 : labels.shape[1] + 1]


class EmbeddingSuperposition:
    """Runs a causal LM on bags by hooking its input embedding module.

    The model is called with one placeholder id per bag, so that every shape it derives (positions,
    causal mask, cache) is that of the L bagged positions; a forward hook on its input embedding
    then swaps the placeholder embeddings for the bag means of the real ids. The embedding is
    computed inside the model's own forward, so the same path serves sharded parameters, and the
    model class, its config and its saved files never change.
    """

    @classmethod
    def for_model(cls, model: nn.Module, previous: "EmbeddingSuperposition | None") -> "EmbeddingSuperposition":
        """The hook on `model`'s current input embedding: `previous` while it is the same module, else a new one
        (the previous hook removed)."""
        embedding = model.get_input_embeddings()
        if previous is not None and previous.embedding_module is embedding:
            return previous
        if previous is not None:
            previous.remove()
        return cls(embedding)

    def __init__(self, embedding_module: nn.Module):
        self.embedding_module = embedding_module
        self._pending: tuple[torch.Tensor, torch.Tensor | None, int] | None = None
        self._handle = embedding_module.register_forward_hook(self._replace_with_bag_means)

    def _replace_with_bag_means(self, module, args, output):
        if self._pending is None:  # an ordinary call, or our own call below
            return None
        input_ids, attention_mask, bag_size = self._pending
        self._pending = None
        return superpose_embeddings(module, input_ids, bag_size, attention_mask)

    def forward(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                bag_size: int, **model_kwargs):
        """`model` on the bags of `input_ids` (B, L*s): returns its outputs for L positions."""
        self._pending = (input_ids, attention_mask, bag_size)
        bag_mask = None if attention_mask is None else bag_attention_mask(attention_mask, bag_size)
        try:
            outputs = model(input_ids=input_ids[:, ::bag_size], attention_mask=bag_mask, **model_kwargs)
        finally:
            never_embedded, self._pending = self._pending is not None, None
        if never_embedded:
            raise RuntimeError(f"{type(model).__name__} never called its input embedding "
                               f"({type(self.embedding_module).__name__}) on input_ids, so its input cannot be "
                               "superposed; this architecture is not supported by TST.")
        return outputs

    def remove(self) -> None:
        self._handle.remove()

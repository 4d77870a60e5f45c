"""The LM head fused with the loss: a causal LM's training forward without its logits.

A forward pre-hook on the model's output embedding takes the hidden states the LM head would
receive and hands the head zero positions instead, so the model returns empty logits and
whatever it does to logits after the head runs on nothing. The loss then applies the head one
chunk of positions at a time (`linear_multi_hot_cross_entropy`), so neither the (positions x
vocabulary) logits nor their float32 copy ever exist.

This is right only when the model's logits are exactly the head's output, soft-capped or not
(Gemma's `final_logit_softcapping`, which the loss applies itself). `fused_head_problem` checks that
once per model against the model's own forward; a model that scales its logits (Cohere, Granite)
or has a head other than `nn.Linear` keeps its materialised logits.
"""

from contextlib import contextmanager

import torch
from torch import nn

from .loss import linear_multi_hot_cross_entropy


def final_logit_softcapping(config) -> float | None:
    """The soft-cap c of logits c * tanh(z / c) that `config` asks for, if any."""
    for source in (config, getattr(config, "text_config", None)):
        cap = getattr(source, "final_logit_softcapping", None)
        if cap:
            return float(cap)
    return None


def _as_the_head_ran(hidden: torch.Tensor, autocast_dtype: torch.dtype | None):
    """The autocast state the head's own call ran under (captured with its input)."""
    return torch.autocast(hidden.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)


class FusedLMHead:
    """Captures the LM head's input during one forward, then computes the summed loss from it."""

    def __init__(self, model: nn.Module):
        self.head = model.get_output_embeddings()
        self.softcap = final_logit_softcapping(model.config)
        self._armed = False
        self._hidden: torch.Tensor | None = None
        self._handle = self.head.register_forward_pre_hook(self._take_hidden_states)

    def _take_hidden_states(self, module, args):
        if not self._armed:  # an ordinary call (evaluation, generation)
            return None
        self._armed = False
        hidden = args[0]
        autocast = torch.is_autocast_enabled(hidden.device.type)  # the head would run under the model's autocast
        self._hidden = (hidden, torch.get_autocast_dtype(hidden.device.type) if autocast else None)
        return (hidden[..., :0, :], *args[1:])

    @contextmanager
    def capturing(self):
        """Within this block, the model's next forward leaves its logits empty and its hidden states here."""
        self._armed, self._hidden = True, None
        try:
            yield self
        finally:
            self._armed = False

    def hidden_states(self) -> tuple[torch.Tensor, torch.dtype | None]:
        """The captured input of the head, and the autocast dtype it would have run under (None: off)."""
        captured, self._hidden = self._hidden, None
        if captured is None:
            raise RuntimeError(f"the model never called its output embedding ({type(self.head).__name__}); set "
                               "tst_fused_lm_head=False to train on its own logits.")
        return captured

    def summed_loss(self, target_bags: torch.Tensor, weighting: str) -> torch.Tensor:
        """Summed MCE of the captured hidden states through the head against `target_bags` (B, L, s)."""
        hidden, autocast_dtype = self.hidden_states()
        with _as_the_head_ran(hidden, autocast_dtype):
            return linear_multi_hot_cross_entropy(hidden, self.head.weight, target_bags, weighting,
                                                  bias=self.head.bias, reduction="sum", softcap=self.softcap)

    def remove(self) -> None:
        self._handle.remove()


def fused_head_problem(model: nn.Module) -> str | None:
    """Why `model`'s logits cannot come from the fused head, or None when they can.

    Checks the head's type, then runs the model twice on 8 tokens (no grad, eval mode): once as is,
    once with the head captured and applied here; their logits must agree.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if type(head) is not nn.Linear:
        return f"its output embedding is {type(head).__name__}, not a plain nn.Linear"
    vocab_size = model.get_input_embeddings().num_embeddings
    probe = (torch.arange(8, device=head.weight.device) % vocab_size).unsqueeze(0)
    fused = FusedLMHead(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(input_ids=probe, use_cache=False).logits.float()
            with fused.capturing():
                model(input_ids=probe, use_cache=False)
            hidden, autocast_dtype = fused.hidden_states()
            with _as_the_head_ran(hidden, autocast_dtype):
                logits = nn.functional.linear(hidden, head.weight, head.bias).float()
    finally:
        fused.remove()
        model.train(was_training)
    if fused.softcap is not None:
        logits = fused.softcap * torch.tanh(logits / fused.softcap)
    # Relative to the logits' scale, loose enough for bf16 rounding, far tighter than any rescaling of logits.
    tolerance = 2e-2 if autocast_dtype is not None or hidden.dtype != torch.float32 else 1e-3
    if (logits - expected).abs().max() > tolerance * expected.abs().max():
        return "its logits are not its LM head's output (the model transforms them after the head, e.g. scales them)"
    return None

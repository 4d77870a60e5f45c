"""The LM head fused with the loss: a causal LM's training forward without its logits.

A forward pre-hook on the model's output embedding takes the hidden states the LM head would
receive and hands the head zero positions instead, so the model returns empty logits and
whatever it does to logits after the head runs on nothing. The loss applies the head one chunk of
positions at a time (`linear_multi_hot_cross_entropy`), after the forward, or, for a ZeRO-3 or
FSDP2-sharded weight, inside the head's forward where the weight is gathered; so neither the
(positions x vocabulary) logits nor their float32 copy ever exist.

This is right only when the model's logits are exactly the head's output, soft-capped or not
(Gemma's `final_logit_softcapping`, which the loss applies itself). `fused_head_problem` checks that
once per model against the model's own forward; a model that scales its logits (Cohere, Granite)
or has a head other than `nn.Linear` keeps its materialised logits.
"""

import functools
from contextlib import contextmanager

import torch
from torch import nn
from transformers.utils import logging

from .loss import linear_multi_hot_cross_entropy

logger = logging.get_logger(__name__)


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
    """Runs a computation on the LM head's input and parameters in place of the head, during one forward.

    Deferred (the default), the head's input is kept and the computation runs when `result()` is
    asked for, outside the model's forward, on the head's own parameters: torch.compile then sees
    one graph per phase. `in_forward=True` runs it inside the head's forward instead, where a ZeRO-3
    or FSDP2-sharded weight exists in full: it is gathered once for the step (by the sharding's own
    forward hook), the chunked loss computes the weight's gradient there, and that gradient reaches
    the sharded parameter once, in backward. `result()` then also ties the head's (empty) output into
    the loss, so that backward passes through the head as the sharding expects (ZeRO-3 regathers
    the weight for it, FSDP2 reduce-scatters the gradient after it).
    """

    def __init__(self, model: nn.Module, in_forward: bool = False):
        self.head = model.get_output_embeddings()
        self.softcap = final_logit_softcapping(model.config)
        self.in_forward = in_forward
        self._compute = None  # armed by `running`
        self._value = None  # the computation's value (in forward), or the computation waiting for the weight
        self._output = None  # the head's empty output (in forward)
        self._handles = [self.head.register_forward_pre_hook(self._take_input)]
        if in_forward:
            self._handles.append(self.head.register_forward_hook(self._keep_output))

    def _take_input(self, module, args):
        if self._compute is None:  # an ordinary call (evaluation, generation)
            return None
        compute, self._compute = self._compute, None
        hidden = args[0]
        autocast = torch.is_autocast_enabled(hidden.device.type)  # the head would run under the model's autocast
        autocast_dtype = torch.get_autocast_dtype(hidden.device.type) if autocast else None
        if self.in_forward:
            self._value = compute(hidden, autocast_dtype, module.weight, module.bias)
        else:
            self._value = functools.partial(compute, hidden, autocast_dtype)
        return (hidden[..., :0, :], *args[1:])

    def _keep_output(self, module, args, output):
        if self._value is not None and self._output is None:
            self._output = output

    @contextmanager
    def running(self, compute):
        """Within this block, the model's next forward hands the head nothing (its logits come out empty) and
        `compute(head_input, autocast_dtype, weight, bias)` runs in its place; `result()` returns its value."""
        self._compute, self._value, self._output = compute, None, None
        try:
            yield self
        finally:
            self._compute = None

    def result(self):
        """What the computation given to `running` returned."""
        value, output = self._value, self._output
        self._value = self._output = None
        if value is None:
            raise RuntimeError(f"the model never called its output embedding ({type(self.head).__name__}); set "
                               "tst_fused_lm_head=False to train on its own logits.")
        if not self.in_forward:
            return value(self.head.weight, self.head.bias)
        return value if output is None or not output.requires_grad else value + output.sum()

    def multi_hot_loss(self, target_bags: torch.Tensor, weighting: str, kernel: str = "eager"):
        """The computation, for `running`, of the summed MCE of the head's input through the head against
        `target_bags` (B, L, s): chunked, so the logits never exist."""
        def summed_loss(hidden, autocast_dtype, weight, bias):
            with _as_the_head_ran(hidden, autocast_dtype):
                return linear_multi_hot_cross_entropy(hidden, weight, target_bags, weighting, bias=bias,
                                                      reduction="sum", softcap=self.softcap, kernel=kernel)
        return summed_loss

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def fused_head_problem(model: nn.Module, in_forward: bool = False) -> str | None:
    """Why `model`'s logits cannot come from the fused head, or None when they can.

    Checks the head's type, then runs the model twice on 8 tokens (no grad, eval mode): once as is,
    once with the head's computation done by a `FusedLMHead` (`in_forward` as the training will run
    it; under sharding every process must call this together); their logits must agree.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if type(head) is not nn.Linear:
        return f"its output embedding is {type(head).__name__}, not a plain nn.Linear"
    vocab_size = model.get_input_embeddings().num_embeddings
    probe = (torch.arange(8, device=head.weight.device) % vocab_size).unsqueeze(0)
    fused = FusedLMHead(model, in_forward)

    def head_logits(hidden, autocast_dtype, weight, bias):
        with _as_the_head_ran(hidden, autocast_dtype):
            logits = nn.functional.linear(hidden, weight, bias).float()
        return logits, autocast_dtype is not None or hidden.dtype != torch.float32

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(input_ids=probe, use_cache=False).logits.float()
            with fused.running(head_logits):
                model(input_ids=probe, use_cache=False)
            logits, low_precision = fused.result()
    finally:
        fused.remove()
        model.train(was_training)
    if fused.softcap is not None:
        logits = fused.softcap * torch.tanh(logits / fused.softcap)
    # Relative to the logits' scale, loose enough for bf16 rounding, far tighter than any rescaling of logits.
    tolerance = 2e-2 if low_precision else 1e-3
    if (logits - expected).abs().max() > tolerance * expected.abs().max():
        return "its logits are not its LM head's output (the model transforms them after the head, e.g. scales them)"
    return None


def fused_head_for(model: nn.Module, previous: tuple | None, in_forward: bool) -> tuple[nn.Module, FusedLMHead | None]:
    """(head, its `FusedLMHead` or None) for `model`'s current LM head: `previous` while the head is the same module,
    else decided anew (`fused_head_problem`, with a warning when it falls back), the previous hooks removed."""
    head = model.get_output_embeddings()
    if previous is not None and previous[0] is head:
        return previous
    if previous is not None and previous[1] is not None:
        previous[1].remove()
    problem = fused_head_problem(model, in_forward=in_forward)
    if problem is not None:
        logger.warning(f"tst_fused_lm_head: {type(model).__name__} trains on its materialised logits, because "
                       f"{problem}.")
    return head, None if problem else FusedLMHead(model, in_forward=in_forward)

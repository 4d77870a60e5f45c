"""A superposition step, then a plain causal-LM step, of a tiny Llama sharded with FSDP2 (`fully_shard`)
over gloo processes, first on the model's logits, then through the fused LM head run inside the head's
forward; rank 0 saves the global losses and the full gradients of all four.

    python -m torch.distributed.run --nproc_per_node 2 tests/run_fsdp2.py OUT.pt
"""

import os
import sys
import warnings

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

sys.path.insert(0, os.path.dirname(__file__))
from conftest import tiny_llama  # noqa: E402

from hf_tst import multi_hot_cross_entropy  # noqa: E402
from hf_tst.head import FusedLMHead  # noqa: E402
from hf_tst.loss import valid_target_weights  # noqa: E402
from hf_tst.superpose import EmbeddingSuperposition, next_bag_targets, next_tokens_targets  # noqa: E402

BAG_SIZE, ROWS, LENGTH = 3, 4, 15


def batch():
    return torch.randint(0, 97, (ROWS, LENGTH), generator=torch.Generator().manual_seed(0))


def superposition_then_recovery(model, rows, fused: bool = False):
    """Loss and gradients of a bagged step, then of a plain next-token step on the same rows. With `fused`,
    both losses come from the fused LM head run inside the head's forward, as TSTTrainer runs it under
    FSDP2 and ZeRO-3; otherwise from the model's logits (the bagged step) and its own loss (the plain one)."""
    head = FusedLMHead(model, in_forward=True) if fused else None
    superpose = EmbeddingSuperposition(model.get_input_embeddings())
    bag_targets, token_targets = next_bag_targets(rows, BAG_SIZE), next_tokens_targets(rows, 1)
    bagged = lambda: superpose.forward(model, rows, torch.ones_like(rows), BAG_SIZE)  # noqa: E731
    steps = [(bagged, bag_targets, lambda: multi_hot_cross_entropy(bagged().logits, bag_targets)),
             (lambda: model(input_ids=rows), token_targets, lambda: model(input_ids=rows, labels=rows).loss)]
    results = []
    for forward, targets, reference_loss in steps:
        if head is None:
            value = reference_loss()
        else:
            with head.running(head.multi_hot_loss(targets, "uniform")):
                forward()
            value = head.result() / valid_target_weights(targets).sum()
        value.backward()
        results.append((value.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}))
        model.zero_grad(set_to_none=False)
    return results


def main():
    warnings.simplefilter("ignore")
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = tiny_llama()
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    # FSDP averages gradients over ranks, and every rank holds the same number of targets.
    steps = []
    for fused in (False, True):
        for loss, grads in superposition_then_recovery(model, batch().chunk(world)[rank], fused):
            dist.all_reduce(loss)
            steps.append((loss / world, {name: grad.full_tensor() for name, grad in grads.items()}))
    if rank == 0:
        torch.save(steps, sys.argv[1])
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

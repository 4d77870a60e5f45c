"""Two CPU processes over gloo, under each shipped launch config, give the per-step losses of one
process with the same global batch, through both TST phases (padded data, power-law weights)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_deepspeed

REPO = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("run_parallel.py")


def launch(output_dir, per_device_batch, *launcher_flags):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", *launcher_flags, str(RUNNER), str(output_dir), str(per_device_batch)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DS_ACCELERATOR": "cpu"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-1000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    return launch(tmp_path_factory.mktemp("single"), 4, "--num_processes", "1")


@pytest.mark.slow
@pytest.mark.parametrize("launch_config, backend, zero_stage", [
    ("ddp.yaml", "DistributedType.MULTI_CPU", False),
    pytest.param("zero2.yaml", "DistributedType.DEEPSPEED", 2, marks=needs_deepspeed),
    pytest.param("zero3.yaml", "DistributedType.DEEPSPEED", 3, marks=needs_deepspeed),
])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, single_process, launch_config, backend,
                                                            zero_stage):
    parallel = launch(tmp_path, 2, "--config_file", f"recipes/accelerate/{launch_config}", "--num_processes", "2")
    assert (parallel["processes"], parallel["backend"], parallel["zero_stage"]) == (2, backend, zero_stage)
    assert parallel["fused_head"] and single_process["fused_head"]  # under ZeRO-3 too: inside the head's forward
    assert single_process["processes"] == 1 and len(parallel["losses"]) == 6
    assert parallel["losses"] == pytest.approx(single_process["losses"], abs=1e-5)
    assert parallel["grad_norms"] == pytest.approx(single_process["grad_norms"], rel=1e-5)  # the whole gradient


@pytest.mark.slow
def test_fsdp2_sharded_steps_match_one_process(tmp_path):
    """accelerate enables FSDP only on accelerators, so FSDP2 is applied here with `fully_shard` itself: the
    bag mean, computed by the embedding hook inside the sharded forward, gives the unsharded losses and
    gradients, for a superposition step and for the recovery step after it; so does the fused LM head
    computing both losses inside the head's forward, where the sharded weight is gathered."""
    import torch
    from conftest import tiny_llama
    from run_fsdp2 import batch, superposition_then_recovery

    out = tmp_path / "fsdp2.pt"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             str(Path(__file__).with_name("run_fsdp2.py")), str(out)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    sharded = torch.load(out)
    unsharded = superposition_then_recovery(tiny_llama(), batch())  # on the logits, unsharded: the reference
    assert len(sharded) == 4 and len(unsharded) == 2
    for (loss, grads), (expected_loss, expected_grads) in zip(sharded, unsharded * 2, strict=True):
        torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-6)
        assert grads.keys() == expected_grads.keys()
        assert all(grad.abs().sum() > 0 for grad in expected_grads.values())
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected_grads[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 4])
def test_two_processes_read_their_own_disjoint_parts_of_a_stream(tmp_path, shards):
    """Each process reads its own part of a 60-block stream (no dispatch through the first): every 2nd block
    with 1 shard, 2 whole shards of 4 each; in 8 steps each reads 20 blocks, none twice, none read by both;
    with 1 shard together they read the stream's first 40, and a superposition row is 2 consecutive blocks
    of its process's part."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "recipes/accelerate/ddp.yaml",
               "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(Path(__file__).with_name("run_stream_ranks.py")), str(tmp_path), str(shards)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reads = []
    for rank in (0, 1):
        recorded = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert recorded["per_process"]
        blocks = [row[k] // 4 for batch in recorded["batches"] for row in batch for k in range(0, len(row), 4)]
        assert len(blocks) == len(set(blocks)) == 20
        for batch in recorded["batches"][:2]:  # superposition: rows of 2 blocks, consecutive in the part
            for row in batch:
                step = 2 if shards == 1 else 1  # with 1 shard a process keeps every 2nd block
                assert row[4] // 4 - row[0] // 4 == step
        reads.append(set(blocks))
    assert not reads[0] & reads[1]
    if shards == 1:
        assert reads[0] | reads[1] == set(range(40))

"""Two CPU processes over gloo, under each shipped launch config, give the per-step losses of one
process with the same global batch, through both TST phases (padded data, power-law weights)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("run_parallel.py")


def launch(output_dir, per_device_batch, *launcher_flags):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", *launcher_flags, str(RUNNER), str(output_dir), str(per_device_batch)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DS_ACCELERATOR": "cpu"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    return launch(tmp_path_factory.mktemp("single"), 4, "--num_processes", "1")


@pytest.mark.slow
@pytest.mark.parametrize("launch_config, backend, zero_stage", [
    ("ddp.yaml", "DistributedType.MULTI_CPU", False),
    ("zero2.yaml", "DistributedType.DEEPSPEED", 2),
    ("zero3.yaml", "DistributedType.DEEPSPEED", 3),
])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, single_process, launch_config, backend,
                                                            zero_stage):
    parallel = launch(tmp_path, 2, "--config_file", f"recipes/accelerate/{launch_config}", "--num_processes", "2")
    assert (parallel["processes"], parallel["backend"], parallel["zero_stage"]) == (2, backend, zero_stage)
    assert single_process["processes"] == 1 and len(parallel["losses"]) == 6
    assert parallel["losses"] == pytest.approx(single_process["losses"], abs=1e-5)

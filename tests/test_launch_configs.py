"""The shipped launch configs parse, and the SLURM script, dry-run with stand-ins for srun,
scontrol, scancel and accelerate, launches one correctly-ranked `accelerate launch` per node whose
arguments accelerate and recipes/train.py both accept, and requeues a preempted job, which resumes."""

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser

from hf_tst.scripts import train as train_script

REPO = Path(__file__).resolve().parents[1]
LAUNCH_CONFIGS = {"ddp.yaml": "MULTI_GPU", "zero2.yaml": "DEEPSPEED", "zero3.yaml": "DEEPSPEED",
                  "fsdp.yaml": "FSDP", "multinode.yaml": "MULTI_GPU"}


def test_every_launch_config_is_listed_and_parses():
    assert sorted(p.name for p in (REPO / "recipes" / "accelerate").glob("*.yaml")) == sorted(LAUNCH_CONFIGS)
    for name, distributed_type in LAUNCH_CONFIGS.items():
        config = load_config_from_file(str(REPO / "recipes" / "accelerate" / name))
        assert str(config.distributed_type).endswith(distributed_type), name
    assert load_config_from_file(str(REPO / "recipes/accelerate/zero3.yaml")).deepspeed_config["zero_stage"] == 3
    assert load_config_from_file(str(REPO / "recipes/accelerate/fsdp.yaml")).fsdp_config["fsdp_version"] == 2


def stand_in(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_slurm_script_dry_run_launches_one_ranked_process_group_per_node(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in(bin_dir, "scontrol", 'printf "gpu-node-a\\ngpu-node-b\\n"\n')
    # srun: drop its own options, then run the task once per node with that node's rank.
    stand_in(bin_dir, "srun", 'while [[ "$1" == --* ]]; do shift; done\n'
                              'for rank in $(seq 0 $((SLURM_NNODES - 1))); do SLURM_PROCID=$rank "$@"; done\n')
    stand_in(bin_dir, "hf-tst", f'python3 -c "import json, sys; print(json.dumps(sys.argv[1:]))" "$@" '
                                f'> {tmp_path}/launch-$SLURM_PROCID.json\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-node-[a-b]",
           "SLURM_NNODES": "2"}
    result = subprocess.run(["bash", "recipes/slurm/train.sbatch", "recipes/configs/tiny.yaml", "--tst_bag_size", "8"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

    model_args, data_args, tst_config = None, None, None
    for rank in (0, 1):
        argv = json.loads((tmp_path / f"launch-{rank}.json").read_text())
        assert argv[0] == "train"  # hf-tst train: the launcher's flags, then the script's from --config on
        script_at = argv.index("--config")
        launch = launch_command_parser().parse_args([*argv[1:script_at], "hf_tst.scripts.train"])
        assert (launch.machine_rank, launch.num_machines, launch.num_processes) == (rank, 2, 16)
        assert (launch.main_process_ip, launch.main_process_port) == ("gpu-node-a", 29500)
        assert launch.config_file == "recipes/accelerate/multinode.yaml"
        cwd = os.getcwd()
        os.chdir(REPO)
        try:
            model_args, data_args, _, tst_config = train_script.make_parser().parse_args_and_config(
                argv[script_at:] + ["--output_dir", str(tmp_path / "out")])
        finally:
            os.chdir(cwd)
    assert tst_config.tst_bag_size == 8 and tst_config.max_steps == 300  # the override over the YAML
    assert model_args.model_config == "recipes/models/tiny-llama" and data_args.block_size == 128


def test_slurm_script_passes_the_preemption_signal_on_and_requeues_and_a_requeued_job_resumes(tmp_path):
    """SLURM signals the batch script (USR1, --signal=B:USR1@300): it signals the job's training processes
    (scancel --signal=USR1), waits for them to save and exit, and requeues the job; a requeued job
    (SLURM_RESTART_COUNT > 0) resumes from the newest complete checkpoint, if there is one, with the same flags."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    stand_in(bin_dir, "scontrol", f'if [ "$1" = show ]; then printf "node-a\\n"; '
                                  f'else echo "scontrol $*" >> {calls}; fi\n')
    stand_in(bin_dir, "scancel", f'echo "scancel $*" >> {calls}\n')
    stand_in(bin_dir, "srun", 'while [[ "$1" == --* ]]; do shift; done\nSLURM_PROCID=0 "$@"\n')
    stand_in(bin_dir, "hf-tst", f'touch {tmp_path}/started; sleep 3; echo "$@" > {tmp_path}/launch.txt; exit 1\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node-a",
           "SLURM_NNODES": "1", "SLURM_JOB_ID": "4242"}
    batch = subprocess.Popen(["bash", "recipes/slurm/train.sbatch", "recipes/configs/tiny.yaml"], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (tmp_path / "started").exists():
        time.sleep(0.05)
    batch.send_signal(signal.SIGUSR1)
    out, err = batch.communicate(timeout=30)
    assert batch.returncode == 0, err
    assert calls.read_text().splitlines() == ["scancel --signal=USR1 4242", "scontrol requeue 4242"]
    assert (tmp_path / "launch.txt").exists()  # the training ran to its end (its save) before the requeue
    assert "--resume_from_checkpoint" not in (tmp_path / "launch.txt").read_text()

    requeued = subprocess.run(["bash", "recipes/slurm/train.sbatch", "recipes/configs/tiny.yaml", "--max_steps", "9"],
                              cwd=REPO, env={**env, "SLURM_RESTART_COUNT": "1"}, capture_output=True, text=True)
    assert requeued.returncode == 1  # the stand-in training's own status, passed on when not preempted
    assert (tmp_path / "launch.txt").read_text().split()[-4:] == ["--max_steps", "9", "--resume_from_checkpoint",
                                                                  "auto"]  # a node lost before any save starts afresh

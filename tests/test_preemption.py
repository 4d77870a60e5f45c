"""Preemption: SIGTERM (as SLURM sends it before a kill) at a step in superposition or in recovery makes
the run finish that step, save a complete checkpoint there and exit with status 75; the run resumed from it
gives the uninterrupted run's per-step losses. One process, and two gloo processes with only one of them
signalled; a second signal during the save does not cut it short."""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from hf_tst.checkpoints import newest_complete_checkpoint
from hf_tst.preemption import PREEMPTED_EXIT_CODE

RUNNER = Path(__file__).with_name("run_tiny.py")
# A step drawn at random in each phase of run_tiny.py's 8-step run (switch after step 4); seeded, so a failure
# names a step that reproduces.
STEPS = random.Random(2026)
SUPERPOSITION_STEP, RECOVERY_STEP = STEPS.randint(1, 3), STEPS.randint(5, 7)
TWO_PROCESSES = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "recipes/accelerate/ddp.yaml",
                 "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no"]


def run(output_dir, *flags, processes=1):
    launcher = TWO_PROCESSES if processes == 2 else [sys.executable]
    return subprocess.run([*launcher, str(RUNNER), str(output_dir), str(output_dir) + ".jsonl", *flags], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Per-step losses of the uninterrupted runs, by process count and data flags."""
    cache = {}

    def get(processes, *data_flags):
        if (processes, data_flags) not in cache:
            result = run(tmp_path_factory.mktemp("uninterrupted") / "out", *data_flags, processes=processes)
            assert result.returncode == 0, result.stderr[-2000:]
            cache[processes, data_flags] = json.loads(result.stdout.splitlines()[-1])
        return cache[processes, data_flags]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("processes, step, extra", [
    (1, SUPERPOSITION_STEP, []),
    (1, RECOVERY_STEP, []),
    (1, RECOVERY_STEP, ["--sigterm_during_save"]),
    (2, SUPERPOSITION_STEP, ["--sigterm_rank", "1"]),  # only the second process is signalled: both must stop
    (2, RECOVERY_STEP, ["--sigterm_rank", "1", "--sigterm_during_save"]),
    (2, SUPERPOSITION_STEP, ["--sigterm_rank", "1", "--streaming"]),  # each process resumes its own part
])
def test_sigterm_saves_at_the_step_boundary_and_the_resumed_run_matches(tmp_path, uninterrupted, processes, step,
                                                                        extra):
    out = tmp_path / "out"
    data_flags = tuple(flag for flag in extra if flag == "--streaming")
    preempted = run(out, "--sigterm_mid_step", str(step), *extra, processes=processes)
    assert f"saved a complete checkpoint at step {step}; exiting with status {PREEMPTED_EXIT_CODE}" in preempted.stderr
    if processes == 1:
        assert preempted.returncode == PREEMPTED_EXIT_CODE, preempted.stderr[-2000:]
    else:
        assert preempted.returncode != 0  # the launcher reports its workers' status 75 as a failure
    assert newest_complete_checkpoint(str(out)) == str(out / f"checkpoint-{step}")  # the signalled step, complete
    resumed = run(out, "--resume", *data_flags, processes=processes)
    assert resumed.returncode == 0, resumed.stderr  # whole: a failed process's cause comes first
    assert json.loads(resumed.stdout.splitlines()[-1]) == uninterrupted(processes, *data_flags)


def test_unknown_signal_names_are_refused(make_config):
    with pytest.raises(ValueError, match="tst_save_on_signal names SIGTERN, not signals"):
        make_config(max_steps=4, tst_save_on_signal=["SIGTERN"])
    assert make_config(max_steps=4, tst_save_on_signal=["none"]).tst_save_on_signal == []


def test_the_signal_handlers_are_restored_when_training_ends_by_an_exception(make_config):
    """A handler left behind would keep the process, and every process it forks later (lm-eval's worker pool,
    whose terminate() sends SIGTERM, hung so), from being stopped."""
    from conftest import packed_dataset, tiny_llama

    from hf_tst import TSTTrainer

    class Failing(TSTTrainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            assert signal.getsignal(signal.SIGTERM) is not before  # installed while training runs
            raise RuntimeError("the first step fails")

    before = signal.getsignal(signal.SIGTERM)
    trainer = Failing(model=tiny_llama(), args=make_config(max_steps=4), train_dataset=packed_dataset(40, 8, 97))
    with pytest.raises(RuntimeError, match="the first step fails"):
        trainer.train()
    assert signal.getsignal(signal.SIGTERM) is before and signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_a_signal_after_the_last_step_is_delivered_again_once_the_handlers_are_restored():
    """Noted during the final save, too late to stop at a step: left noted, the process would ignore the signal for
    good (through evaluation, or the next run of a sweep); it is acted on as if hf_tst had not been there."""
    from hf_tst.preemption import SaveOnSignal

    delivered = []
    before = signal.signal(signal.SIGUSR1, lambda signum, frame: delivered.append(signum))
    try:
        preemption = SaveOnSignal(["SIGUSR1"], any_process=bool)
        with preemption.handlers():
            signal.raise_signal(signal.SIGUSR1)
            assert delivered == []  # noted only, while training runs
        assert delivered == [signal.SIGUSR1] and preemption.stopped_at is None
    finally:
        signal.signal(signal.SIGUSR1, before)

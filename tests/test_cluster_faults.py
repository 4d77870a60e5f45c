"""What a cluster does to a long run, each checked against the run it must equal: torn and missing checkpoint files,
a full disk at a save, a resume with `--ignore_data_skip` or of a finished run, two runs in one folder, a job requeued
before its first save, the distributed set-ups that must be refused, and the GradScaler under step skipping.
The process-tree cases (signals to the whole group, a launcher's grace period) are in test_preemption.py."""

import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import config, packed_dataset, tiny_llama
from transformers.utils import logging

from hf_tst import TSTTrainer
from hf_tst.checkpoints import COMPLETE, checkpoint_problem, mark_complete, newest_complete_checkpoint
from hf_tst.data import PhasedBlockStream
from hf_tst.guard import drop_step_gradients
from hf_tst.phase import check_batch_phase
from hf_tst.preemption import IgnoreSignalsInWorker
from hf_tst.resume import CheckpointSaveError
from hf_tst.run_lock import hold_output_dir

SETTINGS = dict(max_steps=6, tst_ratio=0.5, tst_bag_size=3, per_device_train_batch_size=2, save_strategy="steps",
                save_steps=2, logging_steps=1)


def trainer_for(output_dir, make_config, trainer_class=TSTTrainer, data=None, **overrides):
    args = make_config(**{**SETTINGS, "output_dir": str(output_dir), **overrides})
    return trainer_class(model=tiny_llama(), args=args, train_dataset=data or packed_dataset(40, 8, 97))


def step_losses(trainer) -> dict[int, float]:
    return {log["step"]: log["loss"] for log in trainer.state.log_history if "loss" in log}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted 6-step run (switch after step 3) saved every 2 steps and at the switch, and its per-step
    losses."""
    out = tmp_path_factory.mktemp("finished")
    trainer = trainer_for(out, lambda **overrides: config(out, **overrides))
    trainer.train()
    return out, step_losses(trainer)


def copy_of(run_dir, tmp_path):
    subprocess.run(["cp", "-r", str(run_dir), str(tmp_path / "run")], check=True)
    return tmp_path / "run"


@pytest.mark.parametrize("damage, named", [
    (lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:100]),
     "model.safetensors is torn"),
    (lambda c: (c / "trainer_state.json").write_text(""), "trainer_state.json is torn"),  # a full disk
    (lambda c: (c / "optimizer.pt").unlink(), "optimizer.pt is missing"),
    (lambda c: (c / COMPLETE).unlink(), f"it has no {COMPLETE}"),  # killed during the save
])
def test_a_damaged_checkpoint_is_refused_by_name_and_last_resumes_the_one_before(tmp_path, finished, make_config,
                                                                                 damage, named):
    run, expected = copy_of(finished[0], tmp_path), finished[1]
    damage(run / "checkpoint-4")
    with pytest.raises(ValueError, match=f"checkpoint-4'? is not a complete checkpoint: {named}"):
        trainer_for(run, make_config).train(resume_from_checkpoint=str(run / "checkpoint-4"))
    resumed = trainer_for(run, make_config)
    (run / "checkpoint-6" / COMPLETE).unlink()  # the newest one lost too: last must fall back to the switch's
    resumed.train(resume_from_checkpoint="last")
    assert step_losses(resumed) == expected  # the checkpoint's logged steps, then the resumed ones
    assert checkpoint_problem(str(run / "checkpoint-6")) is None  # the damaged folders were saved again, whole


def test_a_checkpoint_without_optimizer_state_resumes_only_when_asked(tmp_path, make_config):
    trainer_for(tmp_path, make_config, save_only_model=True, max_steps=2).train()
    with pytest.raises(ValueError, match="holds no optimizer state .* tst_resume_without_optimizer=True"):
        trainer_for(tmp_path, make_config, max_steps=4).train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    weights_only = trainer_for(tmp_path, make_config, max_steps=4, tst_resume_without_optimizer=True,
                               tst_allow_changed_settings=True)
    weights_only.train(resume_from_checkpoint="last")
    assert weights_only.state.global_step == 4


class FullDiskAt(TSTTrainer):
    """Its save at `full_at` fails as a full disk does: the trainer state written empty, then ENOSPC."""

    full_at = 4

    def _save_rng_state(self, output_dir):
        super()._save_rng_state(output_dir)
        if self.state.global_step == self.full_at:
            open(os.path.join(output_dir, "trainer_state.json"), "w").close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def record_fails_at_step_4(folder, step):
    """The completeness record of step 4 fails for want of space: every one of Trainer's files is written (where
    Trainer alone would already have rotated the older checkpoints away)."""
    if step == 4:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), folder)
    mark_complete(folder, step)


@pytest.mark.parametrize("fails_in", ["Trainer's files", "the completeness record"])
def test_a_full_disk_stops_the_run_naming_the_folder_and_keeps_every_whole_checkpoint(tmp_path, finished, make_config,
                                                                                       monkeypatch, fails_in):
    if fails_in == "the completeness record":
        monkeypatch.setattr("hf_tst.resume.mark_complete", record_fails_at_step_4)
    trainer = trainer_for(tmp_path, make_config, FullDiskAt if fails_in == "Trainer's files" else TSTTrainer,
                          save_total_limit=1)
    with pytest.raises(CheckpointSaveError, match=r"could not save the checkpoint of step 4 to .*checkpoint-4 \(No "
                                                  r"space left on device\); that folder will never be resumed\. Newest "
                                                  r"complete checkpoint: .*checkpoint-3"):
        trainer.train()
    assert newest_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-3")  # not rotated away
    monkeypatch.undo()
    resumed = trainer_for(tmp_path, make_config, save_total_limit=1)
    resumed.train(resume_from_checkpoint="last")
    assert step_losses(resumed) == finished[1]
    assert [name for name in os.listdir(tmp_path) if name.startswith("checkpoint-")] == ["checkpoint-6"]


@pytest.mark.parametrize("streaming", [False, True])
def test_ignore_data_skip_resumes_at_the_steps_phase_and_rows(tmp_path, finished, make_config, streaming):
    """Resumed after the switch (step 4 of 6, switch after 3), the remaining steps read recovery rows: the same
    losses as the uninterrupted run (which streamed or not, reads the same rows)."""
    run = copy_of(finished[0], tmp_path)
    data = packed_dataset(40, 8, 97)
    if streaming:
        reference = trainer_for(tmp_path / "streamed", make_config, data=data.to_iterable_dataset())
        reference.train()
        run, expected = tmp_path / "streamed", step_losses(reference)
    else:
        expected = finished[1]
    resumed = trainer_for(run, make_config, ignore_data_skip=True,
                          data=data.to_iterable_dataset() if streaming else data)
    resumed.train(resume_from_checkpoint=str(run / "checkpoint-4"))
    assert step_losses(resumed) == expected


def test_ignore_data_skip_is_refused_for_a_stream_whose_position_was_not_saved(tmp_path, make_config):
    data = packed_dataset(40, 8, 97).to_iterable_dataset()
    trainer_for(tmp_path, make_config, data=data).train()
    os.remove(tmp_path / "checkpoint-4" / "tst_data_state-0.json")  # as when it is no longer remembered
    mark_complete(str(tmp_path / "checkpoint-4"), 4)
    with pytest.raises(ValueError, match="ignore_data_skip=True, but .*checkpoint-4 holds no position of the "
                                         "streamed train_dataset"):
        trainer_for(tmp_path, make_config, data=data, ignore_data_skip=True).train(
            resume_from_checkpoint=str(tmp_path / "checkpoint-4"))


def test_resuming_a_finished_run_trains_nothing_and_says_so(tmp_path, finished, make_config, caplog):
    run = copy_of(finished[0], tmp_path)
    before = sorted(os.listdir(run))
    resumed = trainer_for(run, make_config)
    logging.enable_propagation()
    try:
        output = resumed.train(resume_from_checkpoint="last")
    finally:
        logging.disable_propagation()
    assert output.global_step == 6 and resumed.state.global_step == 6
    assert sorted(os.listdir(run)) == before  # no checkpoint-7, none rotated away
    assert "the run is complete, nothing was trained" in caplog.text
    finished_model = TSTTrainer(model=tiny_llama(seed=1), args=resumed.args, train_dataset=packed_dataset(40, 8, 97))
    finished_model.train(resume_from_checkpoint="last")  # the model is the checkpoint's, whatever it started as
    assert all(torch.equal(a, b) for a, b in zip(finished_model.model.state_dict().values(),
                                                 resumed.model.state_dict().values(), strict=True))


@pytest.mark.parametrize("left", ["nothing", "a first save cut short"])
def test_a_requeued_job_that_never_saved_starts_afresh_with_auto(tmp_path, finished, make_config, left):
    if left == "a first save cut short":
        (tmp_path / "checkpoint-2").mkdir()
        (tmp_path / "checkpoint-2" / "model.safetensors").write_bytes(b"\0" * 10)
    fresh = trainer_for(tmp_path, make_config)
    fresh.train(resume_from_checkpoint="auto")
    assert step_losses(fresh) == finished[1]
    resumed = trainer_for(tmp_path, make_config, max_steps=6)
    resumed.train(resume_from_checkpoint="auto")  # now there is one: the finished run, nothing to train
    assert resumed.state.global_step == 6


def test_auto_refuses_checkpoints_it_cannot_resume_rather_than_training_over_them(tmp_path, make_config):
    """Weights-only checkpoints (or ones written without the completeness record) are saved work: a fresh start in
    their folder would rotate them away."""
    trainer_for(tmp_path, make_config, save_only_model=True, max_steps=2).train()
    with pytest.raises(ValueError, match="resume_from_checkpoint='auto', but .* holds no complete checkpoint; the "
                                         "newest, .*checkpoint-2, is not: it holds no optimizer state"):
        trainer_for(tmp_path, make_config, max_steps=4).train(resume_from_checkpoint="auto")
    assert os.listdir(tmp_path / "checkpoint-2")


def test_resuming_another_runs_checkpoint_leaves_that_runs_folder_alone(tmp_path, finished, make_config):
    """Branching from a run's checkpoint must not delete what that run is still writing (its newer, unfinished
    save)."""
    other = copy_of(finished[0], tmp_path)
    (other / "checkpoint-6" / COMPLETE).unlink()  # as while that run is still saving it
    branch = trainer_for(tmp_path / "branch", make_config)
    branch.train(resume_from_checkpoint=str(other / "checkpoint-4"))
    assert (other / "checkpoint-6").is_dir() and branch.state.global_step == 6


def test_a_file_system_without_flock_warns_and_trains(tmp_path, make_config, monkeypatch, caplog):
    def no_flock(handle, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr("hf_tst.run_lock.fcntl.flock", no_flock)
    logging.enable_propagation()
    try:
        trainer_for(tmp_path, make_config, max_steps=2).train()
    finally:
        logging.disable_propagation()
    assert f"output_dir {tmp_path} cannot be locked" in caplog.text


def test_a_batch_of_the_wrong_phase_stops_the_run():
    check_batch_phase(True, 3, 3)
    check_batch_phase(False, 4, 3)
    with pytest.raises(RuntimeError, match="step 4 is a recovery step .* but its batch holds superposition rows"):
        check_batch_phase(True, 4, 3)


def test_a_folder_held_by_a_live_run_is_refused_naming_it_and_a_dead_holder_is_taken_over(tmp_path, make_config):
    with hold_output_dir(str(tmp_path), True, bool):
        holder = json.loads((tmp_path / "_tst_run.lock").read_text())
        with pytest.raises(ValueError, match=rf"output_dir {tmp_path} is in use by another run that is still alive "
                                             rf".*\"pid\": {os.getpid()}"):
            trainer_for(tmp_path, make_config).train()
    assert holder["pid"] == os.getpid()
    dead = subprocess.run([sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'w'); "
                           "fcntl.flock(f, fcntl.LOCK_EX); f.write('a dead run')", str(tmp_path / "_tst_run.lock")])
    assert dead.returncode == 0
    trainer_for(tmp_path, make_config, max_steps=2).train()  # its predecessor died holding the lock: taken over


@pytest.mark.parametrize("setting, message", [
    (dict(accelerator_config={"split_batches": True}), "split_batches=True splits each batch between the processes"),
    (dict(enable_jit_checkpoint=True), "enable_jit_checkpoint=True would install a second handler for SIGTERM"),
])
def test_set_ups_that_would_move_the_switch_or_fight_for_the_signal_are_refused(make_config, setting, message):
    with pytest.raises(ValueError, match=message):
        TSTTrainer(model=tiny_llama(), args=make_config(max_steps=4, **setting),
                   train_dataset=packed_dataset(40, 8, 97))


def test_data_parallel_over_several_gpus_in_one_process_is_refused(make_config):
    args = make_config(max_steps=4)
    args._n_gpu = 2  # what TrainingArguments finds on a node whose GPUs one process sees
    with pytest.raises(ValueError, match=r"2 GPUs are visible to one process, .*DataParallel.*\(accelerate launch "
                                         "--num_processes 2"):
        TSTTrainer(model=tiny_llama(), args=args, train_dataset=packed_dataset(40, 8, 97))


def test_stream_workers_are_checked_against_each_processes_shards_after_the_split(make_config):
    """2 shards pass a check of the whole stream with 2 workers, but split between 2 processes each holds one."""
    stream = packed_dataset(40, 8, 97).to_iterable_dataset(num_shards=2)
    args = make_config(max_steps=4, dataloader_num_workers=2, tst_ratio=0.5)
    with pytest.raises(ValueError, match="dataloader_num_workers=2: .* process 1's part of the train_dataset \\(2 "
                                         "processes\\) has 1 shard\\(s\\)"):
        PhasedBlockStream.for_run(stream, args, 2, process_index=1, processes=2)
    PhasedBlockStream.for_run(packed_dataset(40, 8, 97).to_iterable_dataset(num_shards=4), args, 2, 1, 2)


@pytest.mark.parametrize("under_grad_scaler", [False, True])
def test_a_skipped_step_changes_nothing_with_or_without_a_grad_scaler(under_grad_scaler):
    """fp16's GradScaler refuses to step an optimizer whose gradients were dropped ("No inf checks were recorded");
    made NaN, they make it skip the step by its own rule."""
    model = torch.nn.Linear(3, 1)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0, enabled=under_grad_scaler)
    scaler.scale(model(torch.ones(2, 3)).sum()).backward()  # finite: only dropping the step may keep it
    drop_step_gradients(model, under_grad_scaler)
    scaler.step(optimizer)
    scaler.update()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    if under_grad_scaler:
        assert scaler.get_scale() == 2.0  # lowered, as for any overflow


def test_dataloader_workers_leave_the_preemption_signals_to_the_trainer():
    seeded = []
    init = IgnoreSignalsInWorker([signal.SIGUSR2], then=seeded.append)
    previous = signal.getsignal(signal.SIGUSR2)
    try:
        init(3)
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN and seeded == [3]
    finally:
        signal.signal(signal.SIGUSR2, previous)

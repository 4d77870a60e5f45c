"""Resuming: a run SIGKILLed anywhere and restarted from its newest checkpoint reproduces the
uninterrupted run; incomplete checkpoints and changed TST settings are refused before any compute."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import packed_dataset, tiny_llama

from hf_tst import TSTTrainer

RUNNER = Path(__file__).with_name("run_tiny.py")


def run(output_dir, record, *flags):
    result = subprocess.run([sys.executable, str(RUNNER), str(output_dir), str(record), *flags],
                            capture_output=True, text=True, timeout=300)
    return result


def records(path):
    """step -> the data digests of its micro-batches, in order."""
    by_step = {}
    for line in Path(path).read_text().splitlines():
        entry = json.loads(line)
        by_step.setdefault(entry["step"], []).append(entry["data"])
    return by_step


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference runs, one per dataset kind: (per-step losses, per-step data digests)."""
    cache = {}

    def get(stream_flag):
        key = tuple(stream_flag)
        if key not in cache:
            folder = tmp_path_factory.mktemp("uninterrupted")
            result = run(folder / "out", folder / "record.jsonl", *stream_flag)
            assert result.returncode == 0, result.stderr[-2000:]
            cache[key] = json.loads(result.stdout.splitlines()[-1]), records(folder / "record.jsonl")
        return cache[key]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("kill, streaming, resumes_from", [
    (["--kill_mid_step", "3"], False, 2),     # mid-superposition
    (["--kill_after_save", "4"], False, 4),   # right after the checkpoint at the switch
    (["--kill_mid_step", "5"], False, 4),     # first recovery step
    (["--kill_mid_step", "7"], False, 6),     # late in recovery
    (["--kill_mid_step", "3"], True, 2),      # streaming dataset, mid-superposition
    (["--kill_after_save", "4"], True, 4),    # streaming, right after the checkpoint at the switch
    (["--kill_mid_step", "7"], True, 6),      # streaming, late in recovery
])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, kill, streaming, resumes_from):
    stream_flag = ["--streaming"] if streaming else []
    expected_losses, expected_data = uninterrupted(stream_flag)
    killed = run(tmp_path / "run", tmp_path / "killed.jsonl", *kill, *stream_flag)
    assert killed.returncode == -signal.SIGKILL
    resumed = run(tmp_path / "run", tmp_path / "resumed.jsonl", "--resume", *stream_flag)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout.splitlines()[-1]) == expected_losses
    resumed_data = records(tmp_path / "resumed.jsonl")
    assert sorted(resumed_data) == list(range(resumes_from + 1, 9))  # the phase and position came from the checkpoint
    assert resumed_data == {step: expected_data[step] for step in resumed_data}


def short_run(output_dir, make_config, blocks=40, **overrides):
    settings = dict(output_dir=str(output_dir), max_steps=6, tst_ratio=0.5, tst_bag_size=3,
                    per_device_train_batch_size=2, save_strategy="steps", save_steps=2)
    args = make_config(**{**settings, **overrides})
    return TSTTrainer(model=tiny_llama(), args=args, train_dataset=packed_dataset(blocks, 8, 97))


@pytest.mark.parametrize("streaming", [False, True])
def test_a_resumed_run_logs_the_epochs_and_losses_of_the_uninterrupted_run(tmp_path, make_config, streaming):
    """The stream is placed at the resumed step instead of replayed; Trainer must still count the steps before it."""
    def logged(trainer) -> list[tuple]:
        return [(log["step"], log["epoch"], log["loss"]) for log in trainer.state.log_history if "loss" in log]

    def run(folder, resume=None):
        trainer = short_run(folder, make_config, blocks=60, max_steps=8)
        if streaming:
            trainer.train_dataset = packed_dataset(60, 8, 97).to_iterable_dataset()
        trainer.train(resume_from_checkpoint=resume)
        return logged(trainer)

    uninterrupted = run(tmp_path / "uninterrupted")
    assert [epoch for _, epoch, _ in uninterrupted] == sorted({epoch for _, epoch, _ in uninterrupted})  # rising
    run(tmp_path / "stopped")
    resumed = run(tmp_path / "stopped", resume=str(tmp_path / "stopped" / "checkpoint-4"))
    assert resumed == uninterrupted


def test_interrupted_save_is_refused_by_name_and_skipped_by_resume_true(tmp_path, make_config):
    short_run(tmp_path, make_config).train()
    (tmp_path / "checkpoint-6" / "trainer_state.json").unlink()  # as if killed mid-save
    with pytest.raises(ValueError, match="checkpoint-6.*not a complete checkpoint"):
        short_run(tmp_path, make_config).train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))
    for newest in (True, "last"):
        (tmp_path / "checkpoint-6" / "trainer_state.json").unlink(missing_ok=True)
        trainer = short_run(tmp_path, make_config)
        trainer.train(resume_from_checkpoint=newest)
        assert trainer.state.global_step == 6
        assert [log["step"] for log in trainer.state.log_history if "loss" in log] == [1, 2, 3, 4, 5, 6]


def test_resume_last_without_a_checkpoint_is_refused_by_name(tmp_path, make_config):
    with pytest.raises(ValueError, match=r"resume_from_checkpoint='last', but .* holds no complete checkpoint"):
        short_run(tmp_path, make_config).train(resume_from_checkpoint="last")


@pytest.mark.parametrize("change, message", [
    (dict(tst_bag_size=4), "tst_bag_size 3 -> 4"),
    (dict(tst_ratio=0.34), "tst_ratio 0.5 -> 0.34"),
    (dict(max_steps=8), "max_steps 6 -> 8"),
    (dict(per_device_train_batch_size=4), "rows_per_step 2 -> 4"),
    # settings that move the data position: which block each row reads
    (dict(tst_fold="batch"), "tst_fold 'sequence' -> 'batch', tst_contiguous_rows True -> False"),
    (dict(tst_contiguous_rows=False), "tst_contiguous_rows True -> False"),
    (dict(seed=1), "data_seed 0 -> 1"),
    (dict(data_seed=7), "data_seed 0 -> 7"),
    (dict(train_sampling_strategy="sequential"), "train_sampling_strategy 'random' -> 'sequential'"),
    (dict(blocks=44), "dataset_rows 40 -> 44"),
])
def test_changed_settings_are_refused_unless_allowed(tmp_path, make_config, change, message):
    short_run(tmp_path, make_config).train()
    checkpoint = str(tmp_path / "checkpoint-2")
    with pytest.raises(ValueError, match=f"{message}.*tst_allow_changed_settings=True"):
        short_run(tmp_path, make_config, **change).train(resume_from_checkpoint=checkpoint)
    allowed = short_run(tmp_path, make_config, tst_allow_changed_settings=True, **change)
    allowed.train(resume_from_checkpoint=checkpoint)
    assert allowed.state.global_step == allowed.args.max_steps


class CountingBlocks(torch.utils.data.Dataset):
    """Map-style blocks that count the reads made of them."""

    def __init__(self, blocks):
        self.blocks, self.reads = blocks, 0

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, index):
        self.reads += 1
        return self.blocks[index]


class FirstBatchRead(Exception):
    pass


class StopAtFirstBatch(TSTTrainer):
    """Raises at the first training step, carrying the reads its data made until then."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        raise FirstBatchRead(self.reads())


class Counter:
    """Counts the blocks a streamed dataset yields, through a `map` in its pipeline."""

    def __init__(self):
        self.blocks = 0

    def __call__(self, block):
        self.blocks += 1
        return block


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True])
def test_a_resumed_stream_reads_no_block_before_its_checkpoint(tmp_path, make_config, streaming):
    """A 200-step run (switch at 100) saved every 20 steps; resumed from steps 20 and 60 (superposition),
    100 (the switch), 140 and 180 (recovery), the data read before the first new batch is the same at every
    step of a phase: the loader's first batches only (it reads one ahead), nothing before the checkpoint."""
    blocks = packed_dataset(1000, 8, 97)
    settings = dict(max_steps=200, tst_ratio=0.5, tst_bag_size=3, per_device_train_batch_size=2,
                    save_strategy="steps", save_steps=20, logging_steps=50)

    def counted_data():
        counter = Counter()
        if streaming:
            return blocks.to_iterable_dataset().map(counter), lambda: counter.blocks
        data = CountingBlocks([dict(block) for block in blocks])
        return data, lambda: data.reads

    TSTTrainer(model=tiny_llama(), args=make_config(**settings), train_dataset=counted_data()[0]).train()
    reads = {}
    for step in (20, 60, 100, 140, 180):
        data, trainer_reads = counted_data()
        trainer = StopAtFirstBatch(model=tiny_llama(), args=make_config(**settings), train_dataset=data)
        trainer.reads = trainer_reads
        with pytest.raises(FirstBatchRead) as first:
            trainer.train(resume_from_checkpoint=str(tmp_path / f"checkpoint-{step}"))
        reads[step] = first.value.args[0]
    # superposition: 2 batches of 2 rows x 3 blocks; recovery: 2 batches of 2 blocks (the switch's first batch is
    # recovery's); map-style data adds the read of its first row that TSTTrainer checks before training.
    # Replaying would have read 20 x 2 x 3 = 120 blocks before step 20's first batch, and 3x that before step 60's.
    checked = 0 if streaming else 1
    assert reads == {20: 12 + checked, 60: 12 + checked, 100: 4 + checked, 140: 4 + checked, 180: 4 + checked}


def test_a_stream_position_from_another_pipeline_is_refused_by_name(tmp_path, make_config):
    settings = dict(max_steps=4, tst_ratio=0.5, tst_bag_size=2, per_device_train_batch_size=2, save_strategy="steps",
                    save_steps=2)
    blocks = packed_dataset(40, 8, 97)
    TSTTrainer(model=tiny_llama(), args=make_config(**settings), train_dataset=blocks.to_iterable_dataset()).train()
    other = TSTTrainer(model=tiny_llama(), args=make_config(**settings),
                       train_dataset=blocks.to_iterable_dataset().map(Counter()))
    with pytest.raises(ValueError, match=r"data position \(tst_data_state-\*.json\) does not fit this train_dataset"):
        other.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


def test_a_damaged_data_position_is_named_with_its_file(tmp_path):
    """Damaged without changing its size (which the completeness record would catch first)."""
    from hf_tst.errors import UsageError
    from hf_tst.resume import load_data_state, save_data_state

    save_data_state(str(tmp_path), {"row": 12}, process_index=0)
    path = tmp_path / "tst_data_state-0.json"
    path.write_text("x" * path.stat().st_size)
    with pytest.raises(UsageError, match=rf"{path} is unreadable .* resume from another checkpoint, or delete "
                                         "tst_data_state-0.json"):
        load_data_state(str(tmp_path), 0)

"""Bad settings fail at construction, naming the field and the fix."""

import sys

import datasets
import pytest
import yaml
from conftest import tiny_llama
from transformers import TrainingArguments, default_data_collator

from hf_tst import TSTConfig, TSTTrainer
from hf_tst.parser import TSTParser


@pytest.mark.parametrize("overrides, message", [
    (dict(tst_bag_size=0), "tst_bag_size must be an integer >= 1"),
    (dict(tst_bag_size=2.5), "tst_bag_size must be an integer >= 1"),
    (dict(tst_ratio=-0.1), r"tst_ratio must lie in \[0, 1\]"),
    (dict(tst_ratio=1.5), r"tst_ratio must lie in \[0, 1\]"),
    (dict(tst_weighting="cubic"), "tst_weighting='cubic' is unknown; choose one of uniform, power_law"),
    (dict(tst_superpose="both"), "tst_superpose='both' is unknown"),
    (dict(tst_fold="depth"), "tst_fold='depth' is unknown; choose one of sequence, batch"),
    (dict(tst_fold="batch", tst_superpose="output"), "tst_fold='batch' folds the input"),
    (dict(max_steps=1, tst_ratio=0.3), "rounds to 0 superposition steps"),
    (dict(train_sampling_strategy="group_by_length"), "train_sampling_strategy='group_by_length' does not apply"),
])
def test_bad_tst_settings_raise_naming_the_field(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        TSTConfig(output_dir=str(tmp_path), **{"max_steps": 10, **overrides})


def test_switch_step_is_round_r_times_t(tmp_path):
    steps = lambda r, t: TSTConfig(output_dir=str(tmp_path), tst_ratio=r, max_steps=t).superposition_steps  # noqa: E731
    assert steps(0.3, 20_000) == 6_000 and steps(0.25, 10) == 3 and steps(0.3, 5) == 2 and steps(0.0, 7) == 0
    assert TSTConfig(output_dir=str(tmp_path), tst_ratio=0.0).superposition_steps == 0  # epochs-based, no TST


def test_ratio_one_warns_that_the_model_will_not_generate(tmp_path):
    with pytest.warns(UserWarning, match="no recovery phase"):
        TSTConfig(output_dir=str(tmp_path), tst_ratio=1.0, max_steps=10)


def test_trainer_refuses_foreign_collators(tmp_path):
    with pytest.raises(TypeError, match="Leave data_collator unset"):
        TSTTrainer(model=tiny_llama(), args=TSTConfig(output_dir=str(tmp_path), max_steps=10, use_cpu=True),
                   data_collator=default_data_collator)


def test_plain_training_arguments_are_converted_with_the_tst_defaults_and_a_warning(tmp_path, caplog):
    fields = dict(output_dir=str(tmp_path), max_steps=10, learning_rate=3e-3, lr_scheduler_type="cosine",
                  per_device_train_batch_size=4, use_cpu=True, report_to="none")
    with caplog.at_level("WARNING", logger="hf_tst.config"):
        trainer = TSTTrainer(model=tiny_llama(), args=TrainingArguments(**fields))
    assert trainer.args.to_dict() == TSTConfig(**fields).to_dict()
    assert "converted to TSTConfig with the TST defaults tst_bag_size=6, tst_ratio=0.3" in caplog.text


def test_a_custom_loss_function_is_refused(tmp_path):
    with pytest.raises(ValueError, match="compute_loss_func is not supported.*override compute_loss"):
        TSTTrainer(model=tiny_llama(), args=TSTConfig(output_dir=str(tmp_path), max_steps=10, use_cpu=True),
                   compute_loss_func=lambda outputs, labels, num_items_in_batch: outputs.loss)


def test_yaml_config_with_command_line_overrides(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"output_dir": str(tmp_path), "max_steps": 100, "tst_bag_size": 4,
                                           "learning_rate": 1e-3}))
    (args,) = TSTParser((TSTConfig,)).parse_args_and_config(["--config", str(config_file), "--tst_bag_size", "8"])
    assert (args.max_steps, args.tst_bag_size, args.learning_rate, args.superposition_steps) == (100, 8, 1e-3, 30)
    config_file.write_text(yaml.safe_dump({"output_dir": str(tmp_path), "tst_bagsize": 4}))
    with pytest.raises(ValueError, match="unknown field.*tst_bagsize"):
        TSTParser((TSTConfig,)).parse_args_and_config(["--config", str(config_file)])


def test_untokenised_train_dataset_is_refused_before_training(tmp_path):
    raw = datasets.Dataset.from_dict({"text": ["some words"] * 4})
    with pytest.raises(ValueError, match="no 'input_ids' column.*pack_text_dataset"):
        TSTTrainer(model=tiny_llama(), args=TSTConfig(output_dir=str(tmp_path), max_steps=10, use_cpu=True),
                   train_dataset=raw)


def test_yaml_base_chain_is_inherited_and_overridden(tmp_path):
    (tmp_path / "common.yaml").write_text(yaml.safe_dump({"output_dir": str(tmp_path), "max_steps": 100,
                                                          "learning_rate": 1e-3}))
    (tmp_path / "tst.yaml").write_text(yaml.safe_dump({"base": "common.yaml", "tst_bag_size": 4, "max_steps": 50}))
    (tmp_path / "baseline.yaml").write_text(yaml.safe_dump({"base": "tst.yaml", "tst_ratio": 0.0}))
    (args,) = TSTParser((TSTConfig,)).parse_args_and_config(["--config", str(tmp_path / "baseline.yaml")])
    assert (args.max_steps, args.learning_rate, args.tst_bag_size, args.tst_ratio) == (50, 1e-3, 4, 0.0)


def test_processes_launched_without_distributed_arguments_are_refused(tmp_path, monkeypatch):
    """A launcher's WORLD_SIZE without the process group that TrainingArguments sets up (on a machine
    without GPUs it needs use_cpu): every launched process would train alone."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = TSTConfig(output_dir=str(tmp_path), max_steps=10, use_cpu=False, report_to="none")
    with pytest.raises(ValueError, match="2 processes were launched.*pass use_cpu=True"):
        TSTTrainer(model=tiny_llama(), args=args)


def test_the_liger_kernel_without_liger_installed_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "liger_kernel", None)
    with pytest.raises(ImportError, match=r"tst_loss_kernel='liger' needs liger_kernel.*hf_tst\[gpu\]"):
        TSTConfig(output_dir=str(tmp_path), max_steps=10, tst_loss_kernel="liger")


def test_batches_are_copied_to_the_device_without_waiting_unless_the_user_says_otherwise(tmp_path, monkeypatch):
    monkeypatch.setattr("hf_tst.config.accelerator_count", lambda: 1)
    assert TSTConfig(output_dir=str(tmp_path), max_steps=10).accelerator_config.non_blocking is True
    unpinned = TSTConfig(output_dir=str(tmp_path), max_steps=10, dataloader_pin_memory=False)
    assert unpinned.accelerator_config.non_blocking is False  # non-blocking copies need pinned memory
    chosen = TSTConfig(output_dir=str(tmp_path), max_steps=10, accelerator_config={"non_blocking": False})
    assert chosen.accelerator_config.non_blocking is False


@pytest.mark.parametrize("devices, pinned", [(0, False), (1, True)])
def test_batches_are_pinned_only_where_an_accelerator_takes_them(devices, pinned, tmp_path, monkeypatch):
    """Without an accelerator the DataLoader would warn on every run and not pin: pinning is off there."""
    monkeypatch.setattr("hf_tst.config.accelerator_count", lambda: devices)
    args = TSTConfig(output_dir=str(tmp_path), max_steps=10)
    assert (args.dataloader_pin_memory, args.accelerator_config.non_blocking) == (pinned, pinned)


def test_use_liger_kernel_needs_the_liger_loss_kernel_too(tmp_path):
    """Trainer's use_liger_kernel patches the model's layers and asks for Liger's cross-entropy, but TST
    computes the loss itself: the two must agree, by name."""
    with pytest.raises(ValueError, match=r"use_liger_kernel=True .* tst_loss_kernel='eager'; set "
                                         r"tst_loss_kernel='liger' as well .* or use_liger_kernel=False"):
        TSTConfig(output_dir=str(tmp_path), max_steps=10, use_liger_kernel=True)

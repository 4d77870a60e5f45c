"""Activation checkpointing, bf16 autocast and torch.compile in both phases, against the plain fp32 run."""

import dataclasses

import pytest
import torch
from conftest import config, packed_dataset, tiny_llama
from torch._dynamo.utils import counters

from hf_tst import TSTConfig, TSTTrainer

# transformers' name since 5.23, and the deprecated one it replaced (the only one before)
CHECKPOINTING_FLAGS = [name for name in ("activation_checkpointing", "gradient_checkpointing")
                       if name in {field.name for field in dataclasses.fields(TSTConfig)}]


def train(make_config, **overrides):
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, 16, 97),
                         args=make_config(max_steps=6, tst_ratio=0.5, tst_bag_size=4, **overrides))
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert [log["tst_phase"] for log in logs] == ["superposition"] * 3 + ["recovery"] * 3
    return trainer, torch.tensor([log["loss"] for log in logs])


@pytest.fixture(scope="module")
def fp32_losses(tmp_path_factory):
    return train(lambda **o: config(tmp_path_factory.mktemp("fp32"), **o))[1]


@pytest.mark.parametrize("flag", CHECKPOINTING_FLAGS)
def test_activation_checkpointing_changes_nothing_under_either_name(flag, make_config, fp32_losses):
    trainer, losses = train(make_config, **{flag: True})
    on = "is_activation_checkpointing" if hasattr(type(trainer.model), "is_activation_checkpointing") else \
        "is_gradient_checkpointing"
    assert getattr(trainer.model, on)
    torch.testing.assert_close(losses, fp32_losses, rtol=0, atol=1e-6)


def test_bf16_autocast_trains_both_phases(make_config, fp32_losses):
    trainer, losses = train(make_config, bf16=True)
    assert trainer.accelerator.mixed_precision == "bf16"
    assert trainer._fused_head[1] is not None  # the head's check passes under autocast too
    assert not torch.equal(losses, fp32_losses)  # autocast really ran in bf16
    torch.testing.assert_close(losses, fp32_losses, rtol=0, atol=5e-3)


@pytest.mark.slow
def test_torch_compile_compiles_both_phases_without_graph_breaks(make_config, fp32_losses):
    counters.clear()
    trainer, losses = train(make_config, torch_compile=True)
    assert counters["stats"]["unique_graphs"] >= 2  # a superposition graph and a recovery graph
    assert not counters["graph_break"]
    torch.testing.assert_close(losses, fp32_losses, rtol=0, atol=1e-5)


def test_the_compiled_loss_kernel_changes_nothing(make_config, fp32_losses):
    """tst_loss_kernel='compiled': torch.compile generates the chunks' kernels, in both phases, same losses."""
    _, losses = train(make_config, tst_loss_kernel="compiled")
    torch.testing.assert_close(losses, fp32_losses, rtol=0, atol=1e-5)

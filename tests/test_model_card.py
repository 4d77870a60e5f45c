"""The model card written at the end of training is a Hub-valid card stating the TST run."""

import sys

import torch
from conftest import needs_plots, packed_dataset, tiny_llama
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM

import hf_tst.hub
import hf_tst.trainer
from hf_tst import TSTTrainer


def test_model_card_states_the_run_and_parses_as_a_hub_card(tmp_path, make_config):
    L, s, batch = 16, 4, 4
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, L, 97),
                         eval_dataset=packed_dataset(8, L, 97, seed=1),
                         args=make_config(max_steps=5, tst_ratio=0.4, tst_bag_size=s, eval_strategy="steps",
                                          eval_steps=5))
    trainer.train()
    assert ModelCard.load(tmp_path / "README.md").data.model_name == tmp_path.name  # written by train() itself
    trainer.create_model_card(model_name="tiny-tst", dataset="python-docs")
    eval_loss = [log["eval_loss"] for log in trainer.state.log_history if "eval_loss" in log][-1]

    card = ModelCard.load(tmp_path / "README.md")  # parses the YAML metadata as the Hub does
    assert card.data.license == "apache-2.0" and card.data.datasets == ["python-docs"]
    assert "token-superposition-training" in card.data.tags
    (result,) = card.data.eval_results
    assert (result.metric_type, result.metric_value) == ("loss", round(eval_loss, 4))
    assert card.data.model_name == "tiny-tst"
    text = " ".join(card.text.split())
    assert "`tst_bag_size=4`, `tst_ratio=0.4`, `tst_weighting=uniform`" in text
    superposition_tokens, recovery_tokens = 2 * batch * L * s, 3 * batch * L
    assert "| optimizer steps | 2 | 3 |" in text
    assert f"| data tokens | {superposition_tokens:,} | {recovery_tokens:,} |" in text
    assert f"this run read {superposition_tokens + recovery_tokens:,} data tokens" in text
    assert f"would read {5 * batch * L:,}" in text
    assert f"| eval loss (nats/token) | {eval_loss:.4f} |" in text
    before = next(log["tst_switch_loss_before"] for log in trainer.state.log_history if "tst_switch_loss_before" in log)
    assert f"At the switch (step 2) the next-token training loss of the superposed model was {before:.4f}" in text
    assert "LlamaForCausalLM" in text


@needs_plots
def test_the_card_shows_the_loss_curve_drawn_beside_it(tmp_path, make_config):
    TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, 16, 97),
               args=make_config(max_steps=4, tst_ratio=0.5, tst_bag_size=4)).train()
    assert "![Loss curves](loss_curve.png)" in (tmp_path / "README.md").read_text()
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_card_is_written_and_says_the_curve_is_missing(tmp_path, make_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` meets when it is not installed
    TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, 16, 97),
               args=make_config(max_steps=4, tst_ratio=0.5, tst_bag_size=4)).train()
    card = ModelCard.load(tmp_path / "README.md")
    assert "No loss curve: matplotlib was not installed" in card.text and "![Loss curves]" not in card.text
    assert not (tmp_path / "loss_curve.png").exists()


def test_a_curve_that_cannot_be_drawn_leaves_a_card_that_says_why(tmp_path, make_config, monkeypatch, caplog):
    def broken_backend(*args, **kwargs):
        raise RuntimeError("no usable backend")

    monkeypatch.setattr(hf_tst.hub, "plot_loss_curves", broken_backend)
    with caplog.at_level("WARNING", logger="hf_tst.hub"):
        TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, 16, 97),
                   args=make_config(max_steps=4, tst_ratio=0.5, tst_bag_size=4)).train()
    card = ModelCard.load(tmp_path / "README.md")
    assert "No loss curve: drawing it failed (RuntimeError: no usable backend)." in card.text
    assert "has no loss curve" in caplog.text


def test_a_card_that_cannot_be_written_warns_and_the_trained_model_is_kept(tmp_path, make_config, monkeypatch,
                                                                           caplog):
    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(hf_tst.trainer, "write_model_card", disk_full)
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, 16, 97),
                         args=make_config(max_steps=4, tst_ratio=0.5, tst_bag_size=4))
    with caplog.at_level("WARNING", logger="hf_tst.trainer"):
        output = trainer.train()
    assert output.global_step == 4
    assert "model card could not be written" in caplog.text and "No space left on device" in caplog.text
    trainer.save_model()
    saved = AutoModelForCausalLM.from_pretrained(tmp_path)
    for p, q in zip(saved.parameters(), trainer.model.parameters(), strict=True):
        assert torch.equal(p, q)

"""LoRA continued pre-training with TST: both phases train the adapter (and, on request, the
embeddings and LM head); the saved adapter loads onto the base model with plain peft."""

import subprocess
import sys

import pytest
import torch
from conftest import packed_dataset, tiny_llama

from hf_tst import TSTTrainer

peft = pytest.importorskip("peft", reason="needs peft: pip install 'hf_tst[peft]'")


@pytest.mark.parametrize("train_embeddings", [False, True])
def test_lora_trains_in_both_phases_and_loads_with_plain_peft(tmp_path, make_config, train_embeddings):
    tiny_llama().save_pretrained(tmp_path / "base")
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                      modules_to_save=["embed_tokens", "lm_head"] if train_embeddings else None)
    model = peft.get_peft_model(tiny_llama(), lora)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = TSTTrainer(model=model, train_dataset=packed_dataset(64, 16, 97),
                         args=make_config(max_steps=6, tst_ratio=0.5, tst_bag_size=4, learning_rate=1e-2))
    trainer.train()
    phases = {log["tst_phase"] for log in trainer.state.log_history if "loss" in log}
    assert phases == {"superposition", "recovery"}
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {name for name, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in name for name in changed)
    assert any("embed_tokens" in name for name in changed) == train_embeddings
    assert any("lm_head" in name for name in changed) == train_embeddings

    trainer.save_model(str(tmp_path / "adapter"))
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        expected = model.eval()(ids).logits
    torch.save(expected, tmp_path / "expected.pt")
    probe = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        "from peft import PeftModel\n"
        f"base = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'base')!r})\n"
        f"model = PeftModel.from_pretrained(base, {str(tmp_path / 'adapter')!r}).eval()\n"
        "with torch.no_grad():\n"
        "    logits = model(torch.tensor([[1, 2, 3, 4, 5]])).logits\n"
        f"torch.testing.assert_close(logits, torch.load({str(tmp_path / 'expected.pt')!r}))\n"
        "assert not any(m.startswith('hf_tst') for m in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]

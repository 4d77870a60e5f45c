"""CI: the installed wheel, used as a new user would, from a directory outside the checkout.

Run with the core install only (`pip install hf_tst-*.whl`, no extras): `TSTTrainer.train()` trains a
tiny Llama on the bytes of the held-out text shipped inside the package and leaves the model card in
`output_dir`; the `hf-tst` console command lists its commands and each command its flags, and the
launch configs that `hf-tst train --accelerate_config` names ship in the package.
"""

import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import datasets
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import hf_tst
from hf_tst import TSTConfig, TSTTrainer
from hf_tst.evaluation import HELD_OUT
from hf_tst.launch import shipped_accelerate_configs

checkout = Path(__file__).resolve().parents[1]
installed_at = Path(hf_tst.__file__).resolve()
assert checkout not in installed_at.parents, f"hf_tst was imported from the checkout ({installed_at}), not the wheel"

block, blocks = 32, 64
with gzip.open(HELD_OUT, "rt") as f:  # package data: present only if the wheel ships it
    data = list(" ".join(json.loads(line)["text"] for line in f).encode())[: block * blocks]
train = datasets.Dataset.from_dict({"input_ids": [data[k:k + block] for k in range(0, len(data), block)]})
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=4, num_key_value_heads=2))
output_dir = tempfile.mkdtemp(prefix="hf-tst-smoke-")
args = TSTConfig(output_dir=output_dir, max_steps=6, tst_bag_size=4, tst_ratio=0.5, per_device_train_batch_size=4,
                 logging_steps=1, use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True)
result = TSTTrainer(model=model, args=args, train_dataset=train).train()
card = (Path(output_dir) / "README.md").read_text()
assert "token-superposition-training" in card and "| optimizer steps | 3 | 3 |" in card, card
print(f"hf_tst {hf_tst.__version__} from {installed_at.parent}: trained {result.global_step} steps "
      f"(final training loss {result.training_loss:.4f}); model card in {output_dir}/README.md")

console = Path(sys.executable).with_name("hf-tst")
listing = subprocess.run([console, "--help"], capture_output=True, text=True, check=True).stdout
commands = ("train", "plan", "evaluate", "compare", "sweep", "ladder", "push")
assert all(f"    {command}" in listing for command in commands), listing
own_flags = {"train": ["--config", "--tst_bag_size", "--model_config"], "plan": ["--num_processes", "--mfu"],
             "evaluate": ["--tasks", "--limit"],
             "compare": ["--config", "--compare_dir", "--eval_limit", "--tst_ratio"],
             "sweep": ["--config", "--bag_sizes", "--ratios", "--sweep_dir"],
             "ladder": ["--config", "--budgets", "--runs {all,baseline,tst}"], "push": ["--revision", "--private"]}
for command, flags in own_flags.items():
    text = subprocess.run([console, command, "--help"], capture_output=True, text=True, check=True).stdout
    assert text.startswith(f"usage: hf-tst {command}") and all(flag in text for flag in flags), (command, text[:500])
print(f"hf-tst --help lists {', '.join(commands)}; each command's --help lists its flags")
assert shipped_accelerate_configs() == ["ddp", "fsdp", "multinode", "zero2", "zero3"], shipped_accelerate_configs()
print(f"hf-tst train --accelerate_config takes {', '.join(shipped_accelerate_configs())} (shipped in the wheel)")

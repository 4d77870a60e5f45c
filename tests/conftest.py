import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from hf_tst import TSTConfig, TSTTrainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HF_TST = str(Path(sys.executable).with_name("hf-tst"))  # the console command installed with the package
PROGRESS_BAR = re.compile(r"\d+%\||it/s\]|s/it\]|examples/s\]")  # tqdm's, as lm-eval and 🤗 datasets draw them


def run_hf_tst(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    """`hf-tst ARGV` as a user runs it: the installed console command, from the repository root, offline."""
    return subprocess.run([HF_TST, *argv], cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=600, **kwargs)


def lines_besides_progress_bars(console: str) -> list[str]:
    """The non-empty lines of `console` that are not progress bars (which redraw themselves with \r)."""
    return [line for line in re.split(r"[\r\n]", console) if line.strip() and not PROGRESS_BAR.search(line)]


def needs(module: str, extra: str):
    """Skip a test (with the reason) when an optional dependency of `pip install 'hf_tst[extra]'` is missing."""
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"needs {module}: pip install 'hf_tst[{extra}]'")


PLOTS = importlib.util.find_spec("matplotlib") is not None  # the card's loss curve is drawn only with the extra
needs_eval, needs_plots = needs("lm_eval", "eval"), needs("matplotlib", "plots")
needs_deepspeed, needs_peft = needs("deepspeed", "deepspeed"), needs("peft", "peft")
# The main job's config, shrunk to seconds: a one-layer model on the small held-out file.
TINY_SHRUNK = ["--config", "recipes/configs/tiny.yaml", "--train_files", "recipes/data/python-docs/validation.jsonl.gz",
               "--config_overrides", "hidden_size=32,intermediate_size=64,num_hidden_layers=1",
               "--save_strategy", "no", "--max_eval_blocks", "8", "--disable_tqdm", "true"]


def load_recipe(name: str):
    """A script of recipes/ as a module (recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", REPO / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_llama(vocab_size: int = 97, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config)


def packed_dataset(num_blocks: int, block_len: int, vocab_size: int, seed: int = 0) -> datasets.Dataset:
    """Packed pre-training blocks as run_clm's group_texts makes them: input_ids, attention_mask, labels."""
    ids = torch.randint(0, vocab_size, (num_blocks, block_len), generator=torch.Generator().manual_seed(seed))
    return datasets.Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist(), "labels": ids.tolist()})


def padded_dataset(num_rows: int, length: int, vocab_size: int, seed: int = 0) -> datasets.Dataset:
    """Unpacked documents of random lengths, right-padded with id 0 and masked."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (num_rows, length), generator=g)
    lengths = torch.randint(3, length + 1, (num_rows,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return datasets.Dataset.from_dict({"input_ids": ids.masked_fill(mask == 0, 0).tolist(),
                                       "attention_mask": mask.tolist()})


def reference_loss(model, ids, mask, s):
    """By hand: bag means of the model's own input embeddings as inputs_embeds, then a loop of cross-entropies."""
    B, N = ids.shape
    L = N // s
    token_vectors = model.get_input_embeddings()(ids).float()
    m = mask.view(B, L, s, 1).float()
    means = ((token_vectors.view(B, L, s, -1) * m).sum(2) / m.sum(2).clamp(min=1)).to(token_vectors.dtype)
    bag_mask = mask.view(B, L, s).amax(-1)
    logits = model(inputs_embeds=means, attention_mask=bag_mask).logits.float()
    targets = ids.masked_fill(mask == 0, -100).view(B, L, s)
    num, den = 0.0, 0
    for j in range(L - 1):
        for i in range(s):
            for n in range(B):
                y = targets[n, j + 1, i]
                if y != -100:
                    num = num + F.cross_entropy(logits[n, j], y)
                    den += 1
    return num / den


def assert_superposition_step_matches_reference(model, make_config, bag_size: int = 3, positions: int = 5):
    """A TSTTrainer superposition step on a padded batch (a partial bag, then an empty one) gives the
    hand-written reference's loss and input-embedding gradient."""
    vocab = model.get_input_embeddings().num_embeddings
    ids = torch.randint(3, vocab, (2, positions * bag_size))
    mask = torch.ones_like(ids)
    mask[1, positions * bag_size - 4:] = 0
    trainer = TSTTrainer(model=model, args=make_config(max_steps=10, tst_bag_size=bag_size))
    rows = [{"input_ids": i, "attention_mask": m, "bag_size": bag_size} for i, m in zip(ids, mask, strict=True)]
    loss = trainer.compute_loss(model, trainer.data_collator(rows))
    loss.backward()
    ours_grad = model.get_input_embeddings().weight.grad.clone()
    model.zero_grad()
    expected = reference_loss(model, ids, mask, bag_size)
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours_grad, model.get_input_embeddings().weight.grad, rtol=5e-4, atol=1e-6)


def config(tmp_path, **overrides) -> TSTConfig:
    defaults = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=1,
                    save_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True)
    return TSTConfig(**{**defaults, **overrides})


@pytest.fixture
def make_config(tmp_path):
    return lambda **overrides: config(tmp_path, **overrides)

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from hf_tst import TSTConfig  # noqa: E402


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


def config(tmp_path, **overrides) -> TSTConfig:
    defaults = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=1,
                    save_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True)
    return TSTConfig(**{**defaults, **overrides})


@pytest.fixture
def make_config(tmp_path):
    return lambda **overrides: config(tmp_path, **overrides)

"""Token-Superposition Training (TST) for the Hugging Face training stack.

The names below load on first use (PEP 562), so that `hf-tst --help` and the console's answer to a misspelt
command import neither torch nor transformers; `from hf_tst import TSTTrainer` works as usual."""

import importlib

MODULE_OF = {
    "EmbeddingSuperposition": "superpose",
    "PhasedBlockStream": "data",
    "TSTConfig": "config",
    "TSTDataCollator": "data",
    "TSTParser": "parser",
    "TSTTrainer": "trainer",
    "UsageError": "errors",
    "bag_weights": "loss",
    "linear_multi_hot_cross_entropy": "loss",
    "multi_hot_cross_entropy": "loss",
    "superpose_embeddings": "superpose",
}
__all__ = sorted(MODULE_OF)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in MODULE_OF:
        raise AttributeError(f"module 'hf_tst' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{MODULE_OF[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *MODULE_OF])

"""Token-Superposition Training (TST) for the Hugging Face training stack.

The names below load on first use (PEP 562), so that `hf-tst --help` and the console's answer to a misspelt
command import neither torch nor transformers; `from hf_tst import TSTTrainer` works as usual."""

import importlib as _importlib

_MODULE_OF = {
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
__all__ = sorted(_MODULE_OF)
__version__ = "0.1.0"


def __getattr__(name: str):
    """`hf_tst.TSTTrainer` and the other names above, and the submodules (`hf_tst.loss`), on first use."""
    if name in _MODULE_OF:
        return getattr(_importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    try:
        return _importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":  # the submodule exists; something it imports does not
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])

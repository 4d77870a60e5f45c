"""Optional dependencies. The core (`pip install hf_tst`) is what `TSTTrainer` needs; the rest comes
with an extra: `eval` (lm-eval), `plots` (matplotlib), `deepspeed`, `peft`, `gpu` (Liger Kernel)."""

import importlib
import sys

from accelerate.utils import other as accelerate_other

from .errors import MissingExtraError


def require(module: str, extra: str, purpose: str):
    """Import `module`, or fail naming what needs it and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(f"{purpose} needs {module}, which is not installed; "
                                f"install it with `pip install 'hf_tst[{extra}]'`.") from error


def pyplot(purpose: str):
    """matplotlib.pyplot on the file-only Agg backend (plots are written, never shown)."""
    matplotlib = require("matplotlib", "plots", purpose)
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def import_deepspeed_only_when_used() -> None:
    """Keep accelerate from importing DeepSpeed into a run that does not use it.

    accelerate's `extract_model_from_parallel`, behind every `unwrap_model` from `Trainer.__init__` on,
    imports DeepSpeed whenever it is installed, only to test `isinstance(model, DeepSpeedEngine)`; the
    import takes seconds and, on a machine without a GPU, logs "Setting accelerator to CPU". No model
    is a `DeepSpeedEngine` before DeepSpeed is imported (a DeepSpeed run imports it while it sets up),
    so asking whether it is imported gives the same answer. Replaces accelerate's own check only."""
    if hasattr(accelerate_other, "is_deepspeed_available"):
        accelerate_other.is_deepspeed_available = _deepspeed_is_imported


def _deepspeed_is_imported() -> bool:
    return "deepspeed" in sys.modules

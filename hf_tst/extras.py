"""Optional dependencies. The core (`pip install hf_tst`) is what `TSTTrainer` needs; the rest comes
with an extra: `eval` (lm-eval), `plots` (matplotlib), `deepspeed`, `peft`, `gpu` (Liger Kernel)."""

import importlib


def require(module: str, extra: str, purpose: str):
    """Import `module`, or fail naming what needs it and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{purpose} needs {module}, which is not installed; "
                          f"install it with `pip install 'hf_tst[{extra}]'`.") from error


def pyplot(purpose: str):
    """matplotlib.pyplot on the file-only Agg backend (plots are written, never shown)."""
    matplotlib = require("matplotlib", "plots", purpose)
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")

"""The two kinds of failure, each with its own shape (`hf_tst.cli.run` shows them):

- `UsageError`: a mistake in what the user passed (a flag, a config key, a data file and its line, the
  checkpoint to resume), found before any compute where it can be (a batch's data is checked as it is built).
  Its message names the input and the fix; `hf-tst` prints it as one line, `PROG: error: MESSAGE`, and exits
  with status 2, argparse's status for a command-line mistake.
- Any other exception is a runtime failure (a full disk, the network, an interrupted save, a library's bug):
  one line with its cause and, when training had started, the optimizer step (`step_noted`), then the
  traceback that explains it; status 1.

A preempted run exits with 75 (`hf_tst.preemption`), neither of these. A job launched in other processes that
fails has printed its own message there; `LaunchedJobFailed` carries only its exit status.
"""

import contextlib
import difflib
from collections.abc import Callable, Iterable

STEP_NOTE = "raised during training, after optimizer step "


class UsageError(ValueError):
    """A mistake in the user's input, named with the fix. A `ValueError`, so `except ValueError` still catches it."""


class MissingExtraError(UsageError, ImportError):
    """An optional dependency that is not installed, named with the extra that installs it."""


class LaunchedJobFailed(Exception):
    """A job launched in other processes failed with exit `status`; they have printed why."""

    def __init__(self, status: int):
        super().__init__(f"the launched job exited with status {status}")
        self.status = status


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'; did you mean X?' with the known name closest to `name`, or '' when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


@contextlib.contextmanager
def step_noted(global_step: Callable[[], int]):
    """Add the optimizer step (`global_step()`, read when it fails) to a runtime failure raised in the `with`
    block, as a note (PEP 678): tracebacks show it, and `failure_line` puts it in the one line."""
    try:
        yield
    except Exception as error:
        if not isinstance(error, UsageError):
            error.__notes__ = [*getattr(error, "__notes__", []), f"{STEP_NOTE}{global_step()}"]  # add_note, 3.10 too
        raise


def usage_line(prog: str, error: UsageError) -> str:
    """`PROG: error: MESSAGE` on one line. A `UsageError` raised in a DataLoader worker reaches the training process
    rewrapped by torch, the worker's traceback in its message; its own message is the traceback's last line."""
    message = str(error)
    if "Original Traceback" in message:
        message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
    return f"{prog}: error: {' '.join(message.split())}"


def failure_line(prog: str, error: BaseException) -> str:
    """`PROG: failed after optimizer step N: Type: message` on one line, printed before the failure's traceback."""
    steps = [note.removeprefix(STEP_NOTE) for note in getattr(error, "__notes__", []) if note.startswith(STEP_NOTE)]
    where = "" if not steps else " before the first optimizer step" if steps[0] == "0" else \
        f" after optimizer step {steps[0]}"
    message = (str(error).strip().splitlines() or [""])[0]
    return f"{prog}: failed{where}: {type(error).__name__}: {message}"


def causes(error: BaseException | None) -> list[BaseException]:
    """`error` and the errors it was raised from (`raise ... from`, or while handling), innermost last."""
    chain = []
    while error is not None and len(chain) < 20:  # a chain, not a cycle
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain

"""Preemption-safe checkpoints: a job asked to stop by a signal (SLURM sends SIGTERM, or the signal
chosen with `--signal`, some time before it kills a job) loses nothing.

`SaveOnSignal.handlers()` installs handlers for `tst_save_on_signal` while `TSTTrainer.train` runs and
restores the previous ones when it ends, by an exception too. A handler only notes the signal. At the
end of every optimizer step the processes agree whether any of them got one (one all-reduce of a flag
per step), and if so, all of them finish that step, save a complete checkpoint and leave training with
`PREEMPTED_EXIT_CODE`, which the shipped sbatch script turns into a requeue; the requeued job resumes
from the newest complete checkpoint (`--resume_from_checkpoint last`). A second signal while the
checkpoint is written is noted and ignored, so it cannot cut the save short. Handlers can only be
installed from the main thread; elsewhere a warning says the run is unprotected.
"""

import contextlib
import signal
import threading
from collections.abc import Callable

from transformers import TrainerCallback
from transformers.utils import logging

logger = logging.get_logger(__name__)

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: stopped to be run again


class SaveOnSignal(TrainerCallback):
    """Saves and stops at the end of the optimizer step in which any process received one of `signals`
    (names such as "SIGTERM"). `any_process(flag)` reduces a bool over the processes (every process calls
    it once per step). `stopped_at` is the step of the save, once stopped."""

    def __init__(self, signals: list[str], any_process: Callable[[bool], bool]):
        self.signals = [signal.Signals[name] for name in signals]
        self.any_process = any_process
        self.received: signal.Signals | None = None
        self.stopped_at: int | None = None

    def _note(self, signum, frame) -> None:
        self.received = self.received or signal.Signals(signum)

    @contextlib.contextmanager
    def handlers(self):
        """The signal handlers, installed for the `with` block and restored however it ends (an exception
        included: a handler left behind would keep the process, and processes it forks, from being stopped)."""
        self.received, self.stopped_at = None, None
        in_main_thread = threading.current_thread() is threading.main_thread()
        if self.signals and not in_main_thread:
            logger.warning(f"tst_save_on_signal: training runs outside the main thread, where no signal handler "
                           f"can be installed; {', '.join(s.name for s in self.signals)} will stop the run unsaved.")
        previous = {signum: signal.signal(signum, self._note) for signum in (self.signals if in_main_thread else [])}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def on_step_end(self, args, state, control, **kwargs):
        if self.signals and self.any_process(self.received is not None):
            control.should_save = control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.stopped_at is not None:
            received = self.received.name if self.received else "a signal on another process"
            logger.warning(f"{received} received: saved a complete checkpoint at step {self.stopped_at}; exiting "
                           f"with status {PREEMPTED_EXIT_CODE} to be requeued (resume with --resume_from_checkpoint "
                           "last).")
            raise SystemExit(PREEMPTED_EXIT_CODE)

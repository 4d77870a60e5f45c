"""Preemption-safe checkpoints: a job asked to stop by a signal (SLURM sends SIGTERM, or the signal
chosen with `--signal`, some time before it kills a job) loses nothing.

`SaveOnSignal.handlers()` installs handlers for `tst_save_on_signal` while `TSTTrainer.train` runs and
restores the previous ones when it ends, by an exception too. A handler only notes the signal. At the
end of every optimizer step the processes agree whether any of them got one (one all-reduce of a flag
per step), and if so, all of them finish that step, save a complete checkpoint and leave training with
`PREEMPTED_EXIT_CODE`, which the shipped sbatch script turns into a requeue; the requeued job resumes
from the newest whole checkpoint (`--resume_from_checkpoint auto` in the sbatch script). A second signal while the
checkpoint is written is noted and ignored, so it cannot cut the save short. Handlers can only be
installed from the main thread; elsewhere a warning says the run is unprotected.

A scheduler signals the whole process tree, not only the trainers:

- DataLoader workers ignore the signals (`IgnoreSignalsInWorker`): the training process saves, and
  stops its workers when it exits.
- A launcher would stop its trainers a few seconds after the first signal, mid-save (accelerate's
  single-process launcher SIGKILLs after 5 s, torch elastic after 30 s). `hf-tst train` runs the launcher
  inside `signals_left_to_trainers`: there no launcher handler acts on the signals; each one is passed on
  to the launched processes, which save and exit with status 75, which the launcher, having waited,
  reports as its own.
"""

import contextlib
import os
import signal
import threading
import unittest.mock
from collections.abc import Callable

import psutil
from transformers import TrainerCallback
from transformers.utils import logging

logger = logging.get_logger(__name__)

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: stopped to be run again
# The signals torch elastic's launcher stops its workers on: torchrun's --signals_to_handle (read from the first when
# the flag is not given), which the launcher then copies into the second, read where the handlers are installed.
ELASTIC_SIGNALS = ("PET_SIGNALS_TO_HANDLE", "TORCHELASTIC_SIGNALS_TO_HANDLE")


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
        included: a handler left behind would keep the process, and processes it forks, from being stopped),
        except after a preemption: the process is then on its way out with status 75, and the copies of the
        signal still arriving (a launcher passes on every one it gets) are noted and ignored. A signal that came
        after the last step ended (during the final save) is delivered again once the handlers are restored."""
        self.received, self.stopped_at = None, None
        in_main_thread = threading.current_thread() is threading.main_thread()
        if self.signals and not in_main_thread:
            logger.warning(f"tst_save_on_signal: training runs outside the main thread, where no signal handler "
                           f"can be installed; {', '.join(s.name for s in self.signals)} will stop the run unsaved.")
        installed = self.signals if in_main_thread else []
        previous = {signum: signal.signal(signum, self._note) for signum in installed}
        finished = False
        try:
            yield
            finished = True
        finally:
            if self.stopped_at is None:  # once preempted, later copies of the signal must not kill the exiting process
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
                if finished and self.received is not None:  # it came after the last step: acted on now, as if unhandled
                    signal.raise_signal(self.received)

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


class IgnoreSignalsInWorker:
    """A DataLoader `worker_init_fn` that makes the worker ignore `signals`, then runs `then` (the loader's own
    `worker_init_fn`, if any). Without it, a signal sent to the whole process group kills the workers (PyTorch
    gives them the default action) and the training process dies of their loss before it can save."""

    def __init__(self, signals: list[signal.Signals], then: Callable[[int], None] | None = None):
        self.signals, self.then = signals, then

    def __call__(self, worker_id: int) -> None:
        for signum in self.signals:
            signal.signal(signum, signal.SIG_IGN)
        if self.then is not None:
            self.then(worker_id)


@contextlib.contextmanager
def signals_left_to_trainers(names: list[str]):
    """For the launcher process (`hf-tst train`): while the `with` block runs, the signals `names` only pass on to
    this process's children, the trainers, which save and exit with `PREEMPTED_EXIT_CODE`; the launcher keeps
    waiting for them. Torch elastic (several processes) is told to leave them alone through its documented
    settings (`ELASTIC_SIGNALS`); accelerate's single-process launcher has no such setting, and its SIGTERM
    handler (exit, then SIGKILL to the trainer 5 s later) is kept from replacing ours for the block."""
    from accelerate.commands import launch as accelerate_launch

    signals = {signal.Signals[name] for name in names}
    if not signals or threading.current_thread() is not threading.main_thread():
        yield
        return

    def pass_on(signum, frame):
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signum)

    elastic = os.environ.get(ELASTIC_SIGNALS[0], os.environ.get(ELASTIC_SIGNALS[1], "SIGTERM,SIGINT,SIGHUP,SIGQUIT"))
    elastic = ",".join(name for name in elastic.split(",") if name.strip() not in names)
    previous = {signum: signal.signal(signum, pass_on) for signum in signals}
    try:
        with (unittest.mock.patch.dict(os.environ, dict.fromkeys(ELASTIC_SIGNALS, elastic)),
              unittest.mock.patch.object(accelerate_launch, "signal", KeepHandlersOf(signals))):
            yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class KeepHandlersOf:
    """The `signal` module, except that installing a handler for one of `signals` leaves the current one."""

    def __init__(self, signals: set[signal.Signals]):
        self.signals = signals

    def __getattr__(self, name: str):
        return getattr(signal, name)

    def signal(self, signum, handler):
        return signal.getsignal(signum) if signum in self.signals else signal.signal(signum, handler)

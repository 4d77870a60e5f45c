"""One run per output folder: two live runs writing the same checkpoint folders would corrupt each other.

The main process holds an exclusive `flock` on `output_dir/_tst_run.lock` for as long as `train()` runs,
and writes who holds it (host, process id, SLURM job, start time) into the file. The kernel drops the
lock when the holder exits, however it exits (a SIGKILL included; on NFS, a lost node's lock lasts until
its lease expires), so a requeued job takes over the folder of its own finished or dead predecessor, while
a second live run is refused before any compute, naming the holder. On a shared file system the lock holds
across nodes where the file system supports `flock` (NFSv4; Lustre mounted with `-o flock`); where it does
not, the run warns and goes on unlocked. The leading underscore keeps the file out of Hub uploads.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
from collections.abc import Callable

from transformers.utils import logging

from .errors import UsageError

logger = logging.get_logger(__name__)

LOCK = "_tst_run.lock"


@contextlib.contextmanager
def hold_output_dir(output_dir: str, is_holder: bool, any_process: Callable[[bool], bool]):
    """Hold `output_dir` for the `with` block (taken by the process where `is_holder`, every process must
    enter): a folder another live run holds is refused on every process, naming that run."""
    handle, refusal = None, None
    if is_holder:
        try:
            handle, refusal = take(output_dir)
        except OSError as error:  # a file system without flock (Lustre without -o flock, NFS without lockd)
            logger.warning(f"output_dir {output_dir} cannot be locked ({error}); the run goes on without the check "
                           "that no other live run writes into it.")
    if any_process(refusal is not None):  # reached by every process, however the holder fared
        raise UsageError(refusal or f"output_dir {output_dir} is in use by another run (the main process names it).")
    try:
        yield
    finally:
        if handle is not None:
            handle.close()  # closing the file releases the lock


def take(output_dir: str):
    """(the open lock file, holding its flock, None), or (None, the refusal naming the live holder)."""
    os.makedirs(output_dir, exist_ok=True)
    handle = open(os.path.join(output_dir, LOCK), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        return None, (f"output_dir {output_dir} is in use by another run that is still alive ({holder} holds {LOCK}); "
                      "wait for it to end, stop it, or pick another output_dir (on a shared file system, a lock "
                      f"can outlive a lost node: if that run is dead, delete {LOCK}).")
    except OSError:
        handle.close()
        raise
    handle.seek(0)
    handle.truncate()
    json.dump({"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": os.environ.get("SLURM_JOB_ID"),
               "started": datetime.datetime.now().isoformat(timespec="seconds")}, handle)
    handle.flush()
    return handle, None

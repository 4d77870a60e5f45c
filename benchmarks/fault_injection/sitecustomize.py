"""Faults for benchmarks/faults.py, injected into every Python process of a case (this folder is put first on
PYTHONPATH, so Python imports this file at start-up). Each fault is set by an environment variable naming a step:

- HF_TST_FAULT_GROUP_SIGTERM_AT=N: after step N's first micro-batch, SIGTERM to the whole process tree (the
  launcher, the trainers, their DataLoader workers), as a scheduler sends it to every process of a job; once.
- HF_TST_FAULT_SLOW_SAVE=SECONDS: the preemption's save sends the tree a second SIGTERM, then takes SECONDS longer.
- HF_TST_FAULT_SIGKILL_IN_SAVE=N: SIGKILL to the whole tree in the middle of step N's save (a lost node).
- HF_TST_FAULT_FULL_DISK_AT=N: step N's save fails in its middle with ENOSPC, as on a full disk.

The tree is the first process that imported this file (the launcher, `hf-tst train`) and all its descendants: not
one process group, since torch elastic starts each trainer in a session of its own.
"""

import os

FAULTS = {name: os.environ[name] for name in os.environ if name.startswith("HF_TST_FAULT_")}
ROOT = "HF_TST_FAULTS_ROOT"  # the pid of the tree's root, inherited by every process it starts

if FAULTS:
    import errno
    import signal
    import time

    import psutil
    from transformers import Trainer

    os.environ.setdefault(ROOT, str(os.getpid()))

    def signal_tree(signum: int) -> None:
        root = psutil.Process(int(os.environ[ROOT]))
        for process in [root, *root.children(recursive=True)]:
            if process.pid != os.getpid():
                process.send_signal(signum)
        os.kill(os.getpid(), signum)  # this process last, so that a SIGKILL reaches every other one first

    def at(name: str, step: int) -> bool:
        return FAULTS.get(name) == str(step)

    training_step, save_checkpoint, save_rng_state = Trainer.training_step, Trainer._save_checkpoint, \
        Trainer._save_rng_state
    signalled = []

    def faulty_training_step(self, model, inputs, num_items_in_batch=None):
        loss = training_step(self, model, inputs, num_items_in_batch)
        if at("HF_TST_FAULT_GROUP_SIGTERM_AT", self.state.global_step + 1) and self.is_world_process_zero() \
                and not signalled:
            signalled.append(True)
            signal_tree(signal.SIGTERM)
        return loss

    def faulty_save_checkpoint(self, model, trial):
        if "HF_TST_FAULT_SLOW_SAVE" in FAULTS and self.control.should_training_stop and self.is_world_process_zero():
            signal_tree(signal.SIGTERM)
            time.sleep(float(FAULTS["HF_TST_FAULT_SLOW_SAVE"]))
        return save_checkpoint(self, model, trial)

    def faulty_save_rng_state(self, output_dir):
        save_rng_state(self, output_dir)  # after the weights and the optimizer state, before the trainer state
        if at("HF_TST_FAULT_SIGKILL_IN_SAVE", self.state.global_step):
            signal_tree(signal.SIGKILL)
        if at("HF_TST_FAULT_FULL_DISK_AT", self.state.global_step):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), output_dir)

    Trainer.training_step, Trainer._save_checkpoint = faulty_training_step, faulty_save_checkpoint
    Trainer._save_rng_state = faulty_save_rng_state

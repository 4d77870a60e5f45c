"""The phase of a TST run as a function of the optimizer step: the one place that says which steps superpose.

A run of T optimizer steps with ratio r superposes its first S = round(r * T) steps (halves rounded up)
and trains the rest as plain next-token prediction. Steps are counted from 1: step n is the update that
takes `TrainerState.global_step` from n - 1 to n, so

    step n is a superposition step  <=>  1 <= n <= S.

Everything that depends on the phase asks here, with the step it concerns:

- the data stream, for each row: row i of a stream that yields R rows per step belongs to step i // R + 1;
- the trainer, for each batch before its forward (`check_batch_phase`): its rows must be bagged exactly
  when its step superposes, so a stream placed anywhere but at its step stops the run instead of training
  the wrong phase;
- the logs (`tst_phase`, `tst_bag_size`) and the non-finite guard, for the step just run;
- the switch callback, the switch checkpoint, the model card and the reports, through S.
"""

import math

SUPERPOSITION, RECOVERY = "superposition", "recovery"


def superposition_steps(ratio: float, max_steps: int) -> int:
    """S: optimizer steps in the superposition phase of a run of `max_steps`: round(r * T), halves rounded up."""
    if ratio == 0 or max_steps <= 0:
        return 0
    return math.floor(ratio * max_steps + 0.5)


def in_superposition(step: int, superposition_steps: int) -> bool:
    """Whether optimizer step `step` (1-based) superposes."""
    return 1 <= step <= superposition_steps


def phase_name(step: int, superposition_steps: int) -> str:
    return SUPERPOSITION if in_superposition(step, superposition_steps) else RECOVERY


def step_of_row(row: int, rows_per_step: int) -> int:
    """The optimizer step (1-based) that reads row `row` (0-based) of a stream yielding `rows_per_step` rows a step."""
    return row // rows_per_step + 1


def check_batch_phase(bagged: bool, step: int, superposition_steps: int) -> None:
    """Refuse a batch whose phase is not its step's: the data stream was placed at another step than the
    trainer's (a resume that neither placed nor replayed it), which would train the wrong objective silently."""
    if bagged != in_superposition(step, superposition_steps):
        read = SUPERPOSITION if bagged else RECOVERY
        raise RuntimeError(
            f"step {step} is a {phase_name(step, superposition_steps)} step (the switch is after step "
            f"{superposition_steps}) but its batch holds {read} rows: the data stream is not at this step's "
            "position. This is a bug in resuming the stream; resume from the checkpoint again without changing "
            "data flags, and report it.")

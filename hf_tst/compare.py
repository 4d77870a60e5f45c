"""Comparing a TST run with its baseline at equal FLOPs: loss curves against steps and against data
tokens, and the equal-loss speedup.

Every step of either run costs the same model FLOPs (same per-step model shape), so the speedup
is a ratio of steps: the steps the baseline needs to reach TST's final eval loss, read off its eval
curve by linear interpolation, divided by TST's steps.
"""

import math

from .extras import pyplot


def eval_curve(log_history: list[dict]) -> list[tuple[int, float, int]]:
    """(step, eval loss, data tokens seen) at each evaluation, in step order."""
    return sorted((log["step"], log["eval_loss"], log.get("num_input_tokens_seen", 0))
                  for log in log_history if "eval_loss" in log)


def steps_to_reach(curve: list[tuple[int, float, int]], target: float, log_steps: bool = False) -> float | None:
    """First step at which the eval loss falls to `target`, interpolated linearly between the two
    points that bracket it (in log step with `log_steps`); None if it never does."""
    previous = None
    for step, loss, _ in curve:
        if loss <= target:
            if previous is None:
                return float(step)
            (step0, loss0, _) = previous
            fraction = (loss0 - target) / (loss0 - loss)
            if log_steps:
                return math.exp(math.log(step0) + fraction * (math.log(step) - math.log(step0)))
            return step0 + fraction * (step - step0)
        previous = (step, loss, None)
    return None


def loss_at(curve: list[tuple[int, float, int]], step: int) -> float | None:
    """The eval loss at `step`, interpolated linearly between the evaluations around it; None outside them."""
    for (step0, loss0, _), (step1, loss1, _) in zip(curve, curve[1:], strict=False):
        if step0 <= step <= step1:
            return loss0 + (loss1 - loss0) * (step - step0) / (step1 - step0)
    return curve[0][1] if curve and curve[0][0] == step else None


def held_out_at_switch(tst: list[tuple[int, float, int]], baseline: list[tuple[int, float, int]],
                       switch_step: int) -> dict:
    """Held-out loss at the switch: TST's evaluation there (the model as superposition left it; None when it
    did not evaluate there) and the baseline's at the same step (interpolated between its evaluations)."""
    return {"tst": dict((step, loss) for step, loss, _ in tst).get(switch_step),
            "baseline": loss_at(baseline, switch_step)}


def equal_loss_speedup(baseline: list[tuple[int, float, int]], tst: list[tuple[int, float, int]]) -> dict:
    """The speedup of TST over the baseline at TST's final eval loss, with the numbers it rests on."""
    tst_steps, tst_loss, _ = tst[-1]
    needed = steps_to_reach(baseline, tst_loss)
    return {"tst_final_eval_loss": tst_loss, "tst_steps": tst_steps, "baseline_final_eval_loss": baseline[-1][1],
            "baseline_steps_to_tst_loss": needed, "speedup": None if needed is None else needed / tst_steps}


def plot_curves(runs: dict[str, list[tuple[int, float, int]]], path: str, switch_step: int | None = None) -> None:
    """Eval loss against steps and against data tokens, one line per run."""
    plt = pyplot("the compare curves")

    figure, (by_step, by_tokens) = plt.subplots(1, 2, figsize=(11, 4))
    for name, curve in runs.items():
        steps, losses, tokens = zip(*curve, strict=True)
        by_step.plot(steps, losses, marker=".", label=name)
        by_tokens.plot(tokens, losses, marker=".", label=name)
    if switch_step:
        by_step.axvline(switch_step, linestyle="--", color="grey", label="TST phase switch")
    by_step.set(xlabel="optimizer step (equal FLOPs)", ylabel="held-out next-token loss")
    by_tokens.set(xlabel="data tokens seen", ylabel="held-out next-token loss")
    by_step.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

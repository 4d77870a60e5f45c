"""The budget ladder: TST's equal-loss speedup as a function of the step budget `T`.

The paper's gains were measured at 20k steps and more; whether TST saves compute at a smaller
budget is an empirical question, and the ladder answers it for one model and one (s, r):

- **Baseline frontier.** The loss a plain run reaches when its schedule ends at budget `T'`. With
  warmup-stable-decay every budget shares the warmup and stable phase, so one stable run serves
  them all: the run for `T'` branches from the stable run's checkpoint at `T' - d(T')` and
  decays linearly over `d(T') = round(decay_fraction * T')` steps. It is the same run as an
  independent one of budget `T'` (same data, same schedule), at the cost of its decay only.
- **TST runs.** One run per budget: its switch sits at `round(r * T)`.
- **Speedup at T.** `S(T) = T_base / T`, where `T_base` is the budget at which the baseline
  frontier reaches TST's final eval loss at `T`, interpolated linearly in `log T'` between the
  frontier's budgets (loss is close to linear in log-compute over a ladder's range). Every step
  of either run costs the same compute, so this is the compute ratio. Outside the frontier it is
  only bounded: `S(T) > T'_max / T` when TST beats the largest baseline budget, `S(T) < T'_min / T`
  when it trails the smallest.
- **Crossover.** The budget where `S` reaches 1, interpolated linearly in `log T` between the two
  budgets that bracket it.
"""


from .compare import steps_to_reach
from .extras import pyplot


def decay_steps(budget: int, decay_fraction: float) -> int:
    """Steps of the linear decay that ends a run of `budget` steps (at least one)."""
    return max(1, round(decay_fraction * budget))


def branch_step(budget: int, decay_fraction: float) -> int:
    """The stable-phase step from which the baseline of `budget` steps starts its decay."""
    return budget - decay_steps(budget, decay_fraction)


def speedup_at(frontier: dict[int, float], budget: int, tst_loss: float) -> dict:
    """The equal-loss speedup of a TST run of `budget` steps that ended at `tst_loss`, against the
    baseline `frontier` ({budget: final eval loss}). `bound` is '=' for an interpolated value, '>' or
    '<' when TST's loss lies outside the frontier and the value is the bound."""
    curve = [(steps, loss, 0) for steps, loss in sorted(frontier.items())]
    needed = steps_to_reach(curve, tst_loss, log_steps=True)
    if needed is None:  # better than the largest baseline budget
        return {"baseline_steps": None, "speedup": curve[-1][0] / budget, "bound": ">"}
    if needed == curve[0][0] and curve[0][1] < tst_loss:  # worse than the smallest baseline budget
        return {"baseline_steps": None, "speedup": needed / budget, "bound": "<"}
    return {"baseline_steps": needed, "speedup": needed / budget, "bound": "="}


def crossover_budget(speedups: list[tuple[int, float]]) -> float | None:
    """The budget at which the speedup first reaches 1.0, interpolated linearly in log budget;
    the smallest budget if it is already there, None if no budget reaches it. (The first point
    of the curve of -speedup to fall to -1.)"""
    return steps_to_reach([(budget, -speedup, 0) for budget, speedup in sorted(speedups)], -1.0, log_steps=True)


def describe_crossover(speedups: list[tuple[int, float]]) -> str:
    crossover = crossover_budget(speedups)
    budgets = sorted(budget for budget, _ in speedups)
    if crossover is None:
        return f"not reached up to T_max = {budgets[-1]:,} steps"
    if crossover == budgets[0]:
        return f"reached at or below the smallest budget, {budgets[0]:,} steps"
    return f"{crossover:,.0f} steps (interpolated)"


def ladder_table(rows: list[dict]) -> str:
    """Markdown table of the ladder, one row per TST budget."""
    lines = ["| T (steps) | TST switch | baseline loss at T | TST loss at T | speedup | baseline tokens/param | "
             "TST data tokens | held-out at switch, TST / baseline | training loss at switch, before / after | "
             "recovery steps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        bound = "" if row["bound"] == "=" else row["bound"]
        recovered = row.get("tst_recovery_steps")
        lines.append(
            f"| {row['budget']:,} | {row['switch_step']:,} | {row['baseline_loss']:.4f} | {row['tst_loss']:.4f} | "
            f"{bound}{row['speedup']:.2f}x | {row['baseline_tokens_per_parameter']:.2f} | {row['tst_tokens']:,} | "
            f"{_pair(row, 'tst_eval_loss_at_switch', 'baseline_eval_loss_at_switch')} | "
            f"{_pair(row, 'tst_switch_loss_before', 'tst_switch_loss_after')} | "
            f"{'not recovered' if recovered is None else recovered} |")
    return "\n".join(lines)


def _pair(row: dict, first: str, second: str) -> str:
    values = row.get(first), row.get(second)
    return "n/a" if None in values else f"{values[0]:.3f} / {values[1]:.3f}"


def plot_ladder(rows: list[dict], frontier: dict[int, float], path: str, title: str) -> None:
    """Speedup against T and against baseline tokens per parameter, and the two loss frontiers."""
    plt = pyplot("the ladder plot")

    figure, (by_steps, by_tokens, losses) = plt.subplots(1, 3, figsize=(15, 4))
    budgets = [row["budget"] for row in rows]
    speedups = [row["speedup"] for row in rows]
    for axis, xs, label in ((by_steps, budgets, "step budget T"),
                            (by_tokens, [row["baseline_tokens_per_parameter"] for row in rows],
                             "baseline data tokens per parameter at T (compute)")):
        axis.plot(xs, speedups, marker="o", label="TST equal-loss speedup")
        for x, row in zip(xs, rows, strict=True):
            if row["bound"] != "=":
                axis.annotate(row["bound"], (x, row["speedup"]), textcoords="offset points", xytext=(6, 0))
        axis.axhline(1.0, linestyle="--", color="grey", label="break-even")
        axis.set(xscale="log", xlabel=label, ylabel="speedup (baseline steps / TST steps)")
        axis.legend()
    losses.plot(sorted(frontier), [frontier[t] for t in sorted(frontier)], marker="o", label="baseline (WSD branches)")
    losses.plot(budgets, [row["tst_loss"] for row in rows], marker="o", label="TST")
    losses.set(xscale="log", xlabel="step budget T", ylabel="final held-out next-token loss")
    losses.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

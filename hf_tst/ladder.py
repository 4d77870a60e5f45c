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

`Ladder` runs it: every run saves as the config says, so a killed ladder started again resumes each
unfinished run from its newest complete checkpoint and skips the finished ones. A ladder's folder
records the settings that made its runs (`settings.json` in the baseline folder and in each TST
folder) and refuses to reuse them under others, naming the differences.
"""

import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict

from .checkpoints import checkpoint_problem, newest_complete_checkpoint
from .compare import eval_curve, held_out_at_switch, steps_to_reach
from .config import TSTConfig
from .errors import UsageError
from .extras import pyplot
from .phase import superposition_steps
from .switch import switch_figures

SETTINGS = "settings.json"
# Fields that do not change what a run computes: where and how often it logs, saves, evaluates and publishes, how
# its data loader is parallelised; max_steps and the decay length are the ladder's own, set per budget.
BOOKKEEPING_PREFIXES = ("logging_", "log_", "save_", "eval_", "hub_", "dataloader_", "push_to_hub", "report_to",
                        "run_name", "disable_tqdm", "output_dir", "overwrite_output_dir", "resume_from_checkpoint",
                        "max_steps", "per_device_eval_batch_size", "tst_peak_tflops", "tst_allow_changed_settings",
                        "closing_note")
LADDER_SCHEDULE_KEYS = ("num_decay_steps", "num_stable_steps")
# The tst_* fields that change what a TST run computes, and their defaults: a TST folder is named after them.
TST_RUN_FIELDS = {"tst_bag_size": None, "tst_ratio": None, "tst_weighting": "uniform", "tst_superpose": "full",
                  "tst_fold": "sequence", "tst_contiguous_rows": True}


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


def run_settings(model_args, data_args, args: TSTConfig) -> dict:
    """Every setting that changes what a run of the ladder computes (model, data, optimisation, batch and
    block size, every tst_* field), as JSON values; bookkeeping and the ladder's per-budget schedule left out."""
    values = {**asdict(model_args), **asdict(data_args), **args.to_dict()}
    kwargs = values.get("lr_scheduler_kwargs") or {}
    kwargs = json.loads(kwargs) if isinstance(kwargs, str) else kwargs
    values["lr_scheduler_kwargs"] = {k: v for k, v in kwargs.items() if k not in LADDER_SCHEDULE_KEYS}
    kept = {name: value for name, value in values.items() if not name.startswith(BOOKKEEPING_PREFIXES)}
    return json.loads(json.dumps(kept, default=str))


def tst_folder_name(args: TSTConfig) -> str:
    """`sS-rR`, then `-FIELD_VALUE` for each tst_* field that changes the run and differs from its default."""
    name = f"s{args.tst_bag_size}-r{args.tst_ratio:g}"
    for field, default in TST_RUN_FIELDS.items():
        if default is not None and getattr(args, field) != default:
            name += f"-{field.removeprefix('tst_')}_{getattr(args, field)}"
    return name


def parameter_count(run_dir: str) -> int:
    """Parameters of the saved model, read from the headers of its safetensors files (one, or the shards
    of a large model); nothing is loaded."""
    from safetensors import safe_open

    files = sorted(name for name in os.listdir(run_dir) if name.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"{run_dir} holds no .safetensors model file to count the parameters of.")
    total = 0
    for name in files:
        with safe_open(os.path.join(run_dir, name), "pt") as f:
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return total


def finished(run_dir: str) -> dict | None:
    """The final eval metrics of a finished run (`pretrain` writes them last), else None."""
    path = os.path.join(run_dir, "eval_results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def log_history(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "trainer_state.json")) as f:
        return json.load(f)["log_history"]


def run_summary(run_dir: str) -> dict:
    """Final eval loss, data tokens read, eval curve and switch figures of a finished run."""
    history = log_history(run_dir)
    tokens = max((log.get("num_input_tokens_seen", 0) for log in history), default=0)
    return {"loss": finished(run_dir)["eval_loss"], "tokens": tokens, "curve": eval_curve(history),
            **switch_figures(history)}


class Ladder:
    """The budget ladder of one model and one TST setting in `ladder_dir`.

    `train(run_dir, **overrides)` trains one run of the configuration with `--field value` overrides
    (`hf_tst.pretraining.train_variant` bound to the parsed command line); `settings` are the configuration's
    `run_settings`. Building a `Ladder` refuses, before any compute, a configuration the ladder cannot branch
    exactly, or a `ladder_dir` whose runs were made under other settings."""

    def __init__(self, train: Callable[..., dict], args: TSTConfig, settings: dict, budgets: list[int],
                 baseline_budgets: list[int], ladder_dir: str, decay_fraction: float = 0.1):
        self.train, self.args = train, args
        self.budgets = sorted(budgets)
        self.baseline_budgets = sorted({*budgets, *baseline_budgets})
        self.decay_fraction = decay_fraction
        self.baseline_dir = os.path.join(ladder_dir, "baseline")
        self.tst_dir = os.path.join(ladder_dir, tst_folder_name(args))
        self._check_configuration()
        baseline_settings = {k: v for k, v in settings.items() if not k.startswith("tst_")}
        claim_folder(self.baseline_dir, baseline_settings)
        claim_folder(self.tst_dir, settings)

    def _check_configuration(self) -> None:
        args = self.args
        if args.lr_scheduler_type.value != "warmup_stable_decay":
            raise UsageError(f"lr_scheduler_type={args.lr_scheduler_type.value!r}: the ladder branches the baseline's "
                             "decays off one stable run, so it needs --lr_scheduler_type warmup_stable_decay.")
        if args.tst_ratio <= 0:
            raise UsageError("tst_ratio=0: the ladder compares TST with its baseline; set --tst_ratio (e.g. 0.3).")
        if args.warmup_steps != int(args.warmup_steps):
            raise UsageError(f"warmup_steps={args.warmup_steps} is a fraction of each run's steps, so the stable run "
                             "and the budgets it branches into would warm up differently; give a whole number of "
                             "steps, e.g. --warmup_steps 20.")
        if args.save_strategy.value != "steps" or args.save_only_model:
            raise UsageError(f"save_strategy={args.save_strategy.value!r}, save_only_model={args.save_only_model}: "
                             "each baseline budget branches from a complete checkpoint of the stable run (model, "
                             "optimizer, schedule) at its branch step; use --save_strategy steps and "
                             "--save_only_model false.")
        early = [b for b in self.baseline_budgets if branch_step(b, self.decay_fraction) < args.warmup_steps]
        if early:
            raise UsageError(f"budgets {early} start their decay before warmup_steps={int(args.warmup_steps)} ends; "
                             "use larger budgets or fewer warmup steps.")

    def schedule(self, budget: int, decay: int, **wsd_kwargs) -> dict:
        """Overrides for a run of `budget` steps that decays over the last `decay`: the config's WSD schedule."""
        kwargs = self.args.lr_scheduler_kwargs or {}
        kwargs = {**(json.loads(kwargs) if isinstance(kwargs, str) else kwargs), "num_decay_steps": decay,
                  **wsd_kwargs}
        return {"max_steps": budget, "lr_scheduler_kwargs": json.dumps(kwargs)}

    def run_baseline(self) -> None:
        """The stable run, extended segment by segment to each budget's branch step, and each budget's decay
        branched from the checkpoint there."""
        stable_dir = os.path.join(self.baseline_dir, "stable")
        for budget in self.baseline_budgets:
            start = branch_step(budget, self.decay_fraction)
            branch_dir = os.path.join(self.baseline_dir, f"T{budget}")
            if finished(branch_dir):
                continue
            checkpoint = os.path.join(stable_dir, f"checkpoint-{start}")
            if checkpoint_problem(checkpoint) is not None:
                reached = checkpointed_steps(stable_dir)
                if reached > start:
                    raise UsageError(f"baseline budget {budget} branches at step {start}, but the stable run in "
                                     f"{stable_dir} has already passed it (step {reached}); add only budgets above "
                                     f"{reached}, or start a new --ladder_dir.")
                # The stable phase outlasts the segment, so the learning rate saved at its end is the stable one that
                # the branch's decay starts from (a schedule ending at `start` would save its final value, 0).
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "Both num_training_steps and num_stable_steps")
                    self.train(stable_dir, tst_ratio=0, **self.schedule(start, 0, num_stable_steps=start),
                               **({"resume_from_checkpoint": "last"} if reached else {}))
            self._train_once(branch_dir, start_from=checkpoint, tst_ratio=0,
                             **self.schedule(budget, decay_steps(budget, self.decay_fraction)))

    def run_tst(self) -> None:
        for budget in self.budgets:
            self._train_once(os.path.join(self.tst_dir, f"T{budget}"),
                             **self.schedule(budget, decay_steps(budget, self.decay_fraction)))

    def _train_once(self, run_dir: str, start_from: str | None = None, **overrides) -> None:
        """One run: skipped when finished, resumed from its own newest complete checkpoint when killed,
        otherwise started (from `start_from`, a checkpoint, when given)."""
        if finished(run_dir):
            return
        resume = "last" if checkpointed_steps(run_dir) else start_from
        self.train(run_dir, **overrides, **({"resume_from_checkpoint": resume} if resume else {}))

    def done(self) -> bool:
        return all(finished(os.path.join(self.baseline_dir, f"T{b}")) for b in self.baseline_budgets) and all(
            finished(os.path.join(self.tst_dir, f"T{b}")) for b in self.budgets)

    def report(self) -> dict:
        """Writes ladder.md, ladder.json and ladder.png in the TST folder; returns what ladder.json holds."""
        args = self.args
        baselines = {b: run_summary(os.path.join(self.baseline_dir, f"T{b}")) for b in self.baseline_budgets}
        frontier = {budget: summary["loss"] for budget, summary in baselines.items()}
        first = self.baseline_budgets[0]
        parameters = parameter_count(os.path.join(self.baseline_dir, f"T{first}"))
        tokens_per_step = baselines[first]["tokens"] / first
        stable_curve = eval_curve(log_history(os.path.join(self.baseline_dir, "stable")))
        rows = []
        for budget in self.budgets:
            tst = run_summary(os.path.join(self.tst_dir, f"T{budget}"))
            switch_step = superposition_steps(args.tst_ratio, budget)
            at_switch = held_out_at_switch(tst["curve"], stable_curve, switch_step)
            rows.append({"budget": budget, "switch_step": switch_step,
                         "tst_eval_loss_at_switch": at_switch["tst"], "baseline_eval_loss_at_switch": at_switch[
                             "baseline"], "baseline_loss": frontier[budget], "tst_loss": tst["loss"],
                         **speedup_at(frontier, budget, tst["loss"]), "tst_tokens": tst["tokens"],
                         "baseline_tokens_per_parameter": budget * tokens_per_step / parameters,
                         **{key: value for key, value in tst.items() if key.startswith("tst_")}})
        speedups = [(row["budget"], row["speedup"]) for row in rows]
        title = f"TST s={args.tst_bag_size}, r={args.tst_ratio:g} vs baseline, {parameters / 1e6:.1f}M parameters"
        text = ladder_report(title, rows, self.baseline_budgets, self.decay_fraction, speedups)
        with open(os.path.join(self.tst_dir, "ladder.md"), "w") as f:
            f.write(text)
        result = {"title": title, "parameters": parameters, "frontier": frontier, "rows": rows,
                  "crossover_budget": crossover_budget(speedups), "crossover": describe_crossover(speedups)}
        with open(os.path.join(self.tst_dir, "ladder.json"), "w") as f:
            json.dump(result, f, indent=2)
        plot_ladder(rows, frontier, os.path.join(self.tst_dir, "ladder.png"), title)
        print(f"{text}\nladder.md, ladder.json and ladder.png in {self.tst_dir}")
        return result


def claim_folder(folder: str, settings: dict) -> None:
    """Record `settings` in `folder` (made if missing), or refuse, naming the differences, when it already
    holds runs made under other settings."""
    path = os.path.join(folder, SETTINGS)
    if os.path.isfile(path):
        with open(path) as f:
            recorded = json.load(f)
        before, after = ({key: values.get(key, "unset") for key in {*recorded, *settings}}
                         for values in (recorded, settings))
        changes = [f"{key} {before[key]!r} -> {after[key]!r}" for key in sorted(before) if before[key] != after[key]]
        if changes:
            raise UsageError(f"{folder} holds ladder runs made with other settings ({'; '.join(changes)}); reusing "
                             "them would mix runs of two configurations. Use a new --ladder_dir, or the settings "
                             f"recorded in {path}.")
        return
    if os.path.isdir(folder) and os.listdir(folder):
        raise UsageError(f"{folder} holds runs but no {SETTINGS} recording the settings that made them (an older "
                         "hf_tst ladder); use a new --ladder_dir.")
    os.makedirs(folder, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(settings, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def checkpointed_steps(run_dir: str) -> int:
    """Steps of the newest complete checkpoint in `run_dir` (0 when it has none)."""
    newest = newest_complete_checkpoint(run_dir)
    return 0 if newest is None else int(newest.rsplit("-", 1)[1])


def ladder_report(title: str, rows: list[dict], baseline_budgets: list[int], decay_fraction: float,
                  speedups: list[tuple[int, float]]) -> str:
    """The text of ladder.md."""
    return "\n".join([
        f"# Budget ladder: {title}", "",
        f"Baseline: one warmup-stable-decay run, branched into a linear decay over the last "
        f"{decay_fraction:.0%} of each budget ({', '.join(f'{b:,}' for b in baseline_budgets)} steps); TST: one "
        "run per budget with the same schedule. Speedup: the baseline steps to TST's final held-out loss "
        "(interpolated in log steps between the baseline's final losses) over TST's steps; '>' and '<' mark "
        "bounds where TST's loss lies outside the baseline's range.", "",
        ladder_table(rows), "",
        f"**Crossover budget** (speedup reaches 1.0): {describe_crossover(speedups)}.", "",
        "'held-out at switch': next-token eval loss of TST's model as superposition left it, and of the baseline's "
        "stable run at the same step (interpolated between its evaluations). 'training loss at switch': TST's "
        "next-token training loss on the first recovery batch (before its update) and the second (after it); "
        "'recovery steps': recovery steps until the 10-step running loss is back below the first.", "",
        "![speedup against budget](ladder.png)", ""])

"""The budget ladder: speedups and the crossover against hand-computed interpolations, branched baseline
decays against independent runs of their budgets, recipes/ladder.py end to end (shrunk), resumed; and a
ladder folder that refuses to be reused under other settings."""

import functools
import json
import math
import os
from pathlib import Path

import pytest
from conftest import TINY_SHRUNK, needs_plots, run_hf_tst, tiny_llama

from hf_tst.checkpoints import mark_complete
from hf_tst.ladder import (
    Ladder,
    branch_step,
    crossover_budget,
    decay_steps,
    describe_crossover,
    parameter_count,
    run_settings,
    speedup_at,
)
from hf_tst.pretraining import train_variant
from hf_tst.scripts import ladder

REPO = Path(__file__).resolve().parents[1]
FRONTIER = {500: 5.0, 1000: 4.6, 2000: 4.3, 4000: 4.1}
# Seconds per run: two budgets of a one-layer model, a switch at round(0.5 T), checkpoints every 3 steps.
LADDER_SHRUNK = [*TINY_SHRUNK, "--warmup_steps", "2", "--logging_steps", "1", "--eval_steps", "4",
                 "--save_strategy", "steps", "--save_steps", "3", "--tst_ratio", "0.5", "--tst_bag_size", "2"]


def make_ladder(ladder_dir, *flags, train=None, budgets=(8, 12), baseline_budgets=(16,), decay_fraction=0.1):
    """A Ladder of LADDER_SHRUNK plus `flags`, training with `train` (by default: the real runs)."""
    argv = [*LADDER_SHRUNK, *flags]
    parser = ladder.make_parser()
    _, model_args, data_args, _, args = parser.parse_args_and_config(argv)
    return Ladder(train or functools.partial(train_variant, parser, argv), args,
                  run_settings(model_args, data_args, args), list(budgets), list(baseline_budgets), str(ladder_dir),
                  decay_fraction)


def test_speedup_interpolates_the_baseline_frontier_in_log_steps():
    # TST reaches 4.45 at T=1000; the frontier crosses 4.45 halfway (in loss) from 1000 (4.6) to 2000 (4.3),
    # so halfway in log steps: sqrt(1000 * 2000) = 1414.2 baseline steps, a speedup of 1.414.
    result = speedup_at(FRONTIER, 1000, 4.45)
    assert result["baseline_steps"] == pytest.approx(1000 * math.sqrt(2))
    assert result["speedup"] == pytest.approx(math.sqrt(2)) and result["bound"] == "="


def test_speedup_outside_the_frontier_is_a_bound():
    assert speedup_at(FRONTIER, 2000, 4.0) == {"baseline_steps": None, "speedup": 2.0, "bound": ">"}
    assert speedup_at(FRONTIER, 1000, 5.2) == {"baseline_steps": None, "speedup": 0.5, "bound": "<"}
    assert speedup_at(FRONTIER, 500, 5.0)["bound"] == "="  # equal to the smallest budget's loss: exactly 1


def test_crossover_is_interpolated_in_log_budget():
    # 0.8 at 1000, 1.2 at 2000: 1.0 lies halfway, at sqrt(1000 * 2000) = 1414 steps.
    speedups = [(500, 0.6), (1000, 0.8), (2000, 1.2), (4000, 1.5)]
    assert crossover_budget(speedups) == pytest.approx(1000 * math.sqrt(2))
    assert describe_crossover(speedups) == "1,414 steps (interpolated)"
    assert crossover_budget([(500, 0.6), (4000, 0.9)]) is None
    assert describe_crossover([(500, 0.6), (4000, 0.9)]) == "not reached up to T_max = 4,000 steps"
    assert describe_crossover([(500, 1.1), (4000, 1.3)]) == "reached at or below the smallest budget, 500 steps"


def test_each_budget_decays_over_its_last_tenth():
    assert [(decay_steps(t, 0.1), branch_step(t, 0.1)) for t in (500, 4000, 5)] == [(50, 450), (400, 3600), (1, 4)]


def step_losses(run_dir: Path) -> list[tuple[int, float]]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [(log["step"], log["loss"]) for log in history if "loss" in log]


@pytest.mark.slow
def test_branched_decay_equals_an_independent_run_of_that_budget(tmp_path, monkeypatch):
    """Budgets 8 and 16 with a quarter of each in decay: the stable run stops at 6, the 8-step branch
    decays from there, the stable run goes on to 12 and the 16-step branch decays from there. Each
    branch's per-step losses are those of a run of its budget from scratch."""
    monkeypatch.chdir(REPO)
    runs = make_ladder(tmp_path / "ladder", budgets=[8, 16], baseline_budgets=[], decay_fraction=0.25)
    runs.run_baseline()
    parser = ladder.make_parser()
    for budget in (8, 16):
        independent = tmp_path / f"independent-{budget}"
        train_variant(parser, LADDER_SHRUNK, str(independent), tst_ratio=0,
                      **runs.schedule(budget, decay_steps(budget, 0.25)))
        branched = step_losses(tmp_path / "ladder" / "baseline" / f"T{budget}")
        assert [step for step, _ in branched] == list(range(1, budget + 1))
        assert branched == step_losses(independent)
    assert sorted(os.listdir(tmp_path / "ladder" / "baseline")) == ["T16", "T8", "settings.json", "stable"]


def log_interpolated_baseline_steps(frontier: dict[int, float], loss: float) -> float:
    """By hand: the two budgets whose losses bracket `loss`, and the point between them where a straight
    line in (log budget, loss) reaches it."""
    budgets = sorted(frontier)
    for low, high in zip(budgets, budgets[1:], strict=False):
        if frontier[low] >= loss >= frontier[high]:
            return low * (high / low) ** ((frontier[low] - loss) / (frontier[low] - frontier[high]))
    raise AssertionError(f"{loss} lies outside the frontier {frontier}")


@pytest.mark.slow
@needs_plots
def test_ladder_recipe_reports_and_resumes_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = [*LADDER_SHRUNK, "--budgets", "8", "12", "--baseline_budgets", "16", "--ladder_dir", str(tmp_path)]
    half = run_hf_tst("ladder", *argv, "--runs", "tst")  # the installed command; the baseline is still to run
    assert half.returncode == 0, half.stderr[-3000:]
    assert half.stdout.splitlines()[-1] == (f"the tst runs are done in {tmp_path}; the report is written when the "
                                            "baseline runs (--runs baseline) finish too.")
    assert not (tmp_path / "s2-r0.5" / "ladder.md").exists()
    other_half = run_hf_tst("ladder", *argv, "--runs", "baseline")  # the last to finish writes the report
    assert other_half.returncode == 0, other_half.stderr[-3000:]
    assert other_half.stdout.splitlines()[-1] == f"ladder.md, ladder.json and ladder.png in {tmp_path / 's2-r0.5'}"
    result = json.loads((tmp_path / "s2-r0.5" / "ladder.json").read_text())
    result["frontier"] = {int(budget): loss for budget, loss in result["frontier"].items()}  # JSON keys are strings
    report = (tmp_path / "s2-r0.5" / "ladder.md").read_text()
    assert [row["budget"] for row in result["rows"]] == [8, 12] and sorted(result["frontier"]) == [8, 12, 16]
    for row in result["rows"]:
        tst = json.loads((tmp_path / "s2-r0.5" / f"T{row['budget']}" / "eval_results.json").read_text())
        assert row["tst_loss"] == tst["eval_loss"] and row["switch_step"] == row["budget"] // 2
        frontier = result["frontier"]
        if row["bound"] == "=":
            expected = log_interpolated_baseline_steps(frontier, row["tst_loss"]) / row["budget"]
        else:  # outside the frontier: the bound at its end
            expected = (max(frontier) if row["bound"] == ">" else min(frontier)) / row["budget"]
        assert row["speedup"] == pytest.approx(expected)
        assert "tst_switch_loss_before" in row
        switch_eval = [log["eval_loss"] for log in json.loads((tmp_path / "s2-r0.5" / f"T{row['budget']}" /
                       "trainer_state.json").read_text())["log_history"] if log.get("step") == row["switch_step"]
                       and "eval_loss" in log]
        assert row["tst_eval_loss_at_switch"] == switch_eval[0] and row["baseline_eval_loss_at_switch"] > 0
    assert "**Crossover budget**" in report and "| 12 | 6 |" in report
    assert (tmp_path / "s2-r0.5" / "ladder.png").read_bytes()[:4] == b"\x89PNG"

    # A kill during the 12-step TST run, after its checkpoint at step 9: rerunning resumes that run only.
    killed = tmp_path / "s2-r0.5" / "T12"
    (killed / "eval_results.json").unlink()
    calls = []

    def train_variant(parser, argv, output_dir, **overrides):  # records the call and finishes the run
        calls.append((output_dir, overrides))
        (killed / "eval_results.json").write_text(json.dumps({"eval_loss": result["rows"][1]["tst_loss"]}))

    monkeypatch.setattr(ladder, "train_variant", train_variant)
    ladder.main(argv)
    assert [(out, kw["resume_from_checkpoint"]) for out, kw in calls] == [(str(killed), "last")]


class FakeRuns:
    """A stand-in for the training runs: each writes the files a finished run leaves (final eval loss from
    `losses`, a trainer state, a whole checkpoint at its last step, a model file) and is recorded."""

    def __init__(self, losses: dict[tuple[str, int], float]):
        self.losses, self.calls = losses, []

    def __call__(self, run_dir: str, max_steps: int, tst_ratio: float | None = None, **overrides):
        self.calls.append((run_dir, max_steps, overrides.get("resume_from_checkpoint")))
        run = Path(run_dir)
        kind = "stable" if run.name == "stable" else "baseline" if tst_ratio == 0 else "tst"
        loss = self.losses.get((kind, max_steps), 9.0)
        history = [{"step": max_steps, "eval_loss": loss, "num_input_tokens_seen": 100 * max_steps}]
        checkpoint = run / f"checkpoint-{max_steps}"
        checkpoint.mkdir(parents=True, exist_ok=True)
        for folder in (run, checkpoint):
            (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))
        for state in ("optimizer.pt", "scheduler.pt"):
            (checkpoint / state).write_bytes(b"")
        mark_complete(str(checkpoint), max_steps)  # whole, as TSTTrainer leaves it
        tiny_llama().save_pretrained(run)
        if kind != "stable":
            (run / "eval_results.json").write_text(json.dumps({"eval_loss": loss}))


def test_report_speedups_are_the_hand_computed_log_interpolations(tmp_path, monkeypatch):
    """Baseline losses 5.0 / 4.6 / 4.3 at 8 / 12 / 16 steps. TST at 8 steps ends at 4.6, the 12-step baseline's
    loss: 12 / 8 = 1.5x. TST at 12 steps ends at 4.45, halfway (in loss) from 12 to 16 steps, so at
    sqrt(12 * 16) = 13.856 baseline steps: 1.1547x."""
    pytest.importorskip("matplotlib", reason="needs matplotlib: pip install 'hf_tst[plots]'")
    monkeypatch.chdir(REPO)
    runs = FakeRuns({("baseline", 8): 5.0, ("baseline", 12): 4.6, ("baseline", 16): 4.3, ("tst", 8): 4.6,
                     ("tst", 12): 4.45})
    built = make_ladder(tmp_path, train=runs)
    built.run_baseline()
    built.run_tst()
    result = built.report()
    assert [row["speedup"] for row in result["rows"]] == pytest.approx([1.5, math.sqrt(12 * 16) / 12])
    assert [row["baseline_steps"] for row in result["rows"]] == pytest.approx([12.0, 13.856406])
    assert result["parameters"] == sum(p.numel() for p in tiny_llama().parameters())


def test_a_rerun_under_another_learning_rate_is_refused_naming_it_before_any_run(tmp_path, monkeypatch):
    """The first ladder's runs stay; the second, with another learning rate, would have reused them."""
    monkeypatch.chdir(REPO)
    runs = FakeRuns({})
    first = make_ladder(tmp_path, train=runs)
    first.run_baseline()
    first.run_tst()
    calls = len(runs.calls)
    with pytest.raises(ValueError, match=r"baseline holds ladder runs made with other settings \(learning_rate "
                                         r"0.003 -> 0.001\).*new --ladder_dir"):
        make_ladder(tmp_path, "--learning_rate", "1e-3", train=runs)
    assert len(runs.calls) == calls  # nothing ran
    make_ladder(tmp_path, train=runs)  # the same settings again: accepted


def test_other_tst_settings_get_their_own_folder_and_share_the_baseline(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    runs = FakeRuns({})
    make_ladder(tmp_path, train=runs).run_tst()
    other = make_ladder(tmp_path, "--tst_weighting", "power_law", "--tst_fold", "batch", train=runs)
    assert os.path.basename(other.tst_dir) == "s2-r0.5-weighting_power_law-fold_batch"
    assert other.baseline_dir == str(tmp_path / "baseline")
    with pytest.raises(ValueError, match=r"s2-r0.5 holds ladder runs made with other settings \(tst_loss_kernel "):
        make_ladder(tmp_path, "--tst_loss_kernel", "compiled", train=runs)


@pytest.mark.parametrize("flags, message", [
    (["--warmup_steps", "0.1"], r"warmup_steps=0.1 is a fraction of each run's steps"),
    (["--save_strategy", "epoch"], r"save_strategy='epoch', save_only_model=False: each baseline budget branches"),
    (["--save_strategy", "no"], r"save_strategy='no'"),
    (["--save_only_model", "true"], r"save_only_model=True"),
    (["--lr_scheduler_type", "cosine"], r"needs --lr_scheduler_type warmup_stable_decay"),
])
def test_configurations_that_cannot_branch_exactly_are_refused_before_any_run(tmp_path, monkeypatch, flags, message):
    monkeypatch.chdir(REPO)
    runs = FakeRuns({})
    with pytest.raises(ValueError, match=message):
        make_ladder(tmp_path, *flags, train=runs)
    assert runs.calls == [] and not os.listdir(tmp_path)


def test_parameter_count_reads_a_sharded_checkpoint(tmp_path):
    model = tiny_llama()
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    shards = sorted(path.name for path in tmp_path.glob("*.safetensors"))
    assert len(shards) > 1 and "model.safetensors" not in shards
    # 97 x 32 twice (embedding, head), 9,280 in each of 2 layers, 32 in the final norm
    assert parameter_count(str(tmp_path)) == sum(p.numel() for p in model.parameters()) == 24_800


def test_a_baseline_budget_behind_the_stable_run_is_refused(tmp_path, monkeypatch):
    """A budget added after the stable run went past its branch step cannot be branched any more."""
    monkeypatch.chdir(REPO)
    runs = FakeRuns({})
    make_ladder(tmp_path, budgets=[60], baseline_budgets=[], train=runs).run_baseline()  # stable run to step 54
    with pytest.raises(ValueError, match=r"budget 40 branches at step 36, but the stable run .* \(step 54\)"):
        make_ladder(tmp_path, budgets=[40], baseline_budgets=[], train=runs).run_baseline()


def test_list_flags_take_several_values_or_a_yaml_list(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    (tmp_path / "ladder.yaml").write_text("base: " + str(REPO / "recipes/configs/tiny.yaml") + "\n"
                                          "budgets: [8, 12]\nbaseline_budgets: [16]\n"
                                          "dataset_name: [one/corpus, two/corpus]\ndataset_probabilities: [0.7, 0.3]\n")
    own, _, data_args, *_ = ladder.make_parser().parse_args_and_config(["--config", str(tmp_path / "ladder.yaml")])
    assert (own.budgets, own.baseline_budgets) == ([8, 12], [16])
    assert (data_args.dataset_name, data_args.dataset_probabilities) == (["one/corpus", "two/corpus"], [0.7, 0.3])
    own, _, data_args, *_ = ladder.make_parser().parse_args_and_config([
        "--config", str(tmp_path / "ladder.yaml"), "--budgets", "4", "6", "--dataset_name", "three/corpus,four/corpus"])
    assert own.budgets == [4, 6] and data_args.dataset_name == ["three/corpus", "four/corpus"]  # commas still split

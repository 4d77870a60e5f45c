"""The budget ladder: speedups and the crossover against hand-computed interpolations, branched baseline
decays against independent runs of their budgets, and recipes/ladder.py end to end (shrunk), resumed."""

import functools
import json
import math
import os
from pathlib import Path

import pytest
from conftest import TINY_SHRUNK, needs_plots

from hf_tst.ladder import branch_step, crossover_budget, decay_steps, describe_crossover, speedup_at
from hf_tst.pretraining import train_variant
from hf_tst.scripts import ladder

REPO = Path(__file__).resolve().parents[1]
FRONTIER = {500: 5.0, 1000: 4.6, 2000: 4.3, 4000: 4.1}
# Seconds per run: two budgets of a one-layer model, a switch at round(0.5 T), checkpoints every 3 steps.
LADDER_SHRUNK = [*TINY_SHRUNK, "--warmup_steps", "2", "--logging_steps", "1", "--eval_steps", "4",
                 "--save_strategy", "steps", "--save_steps", "3", "--tst_ratio", "0.5", "--tst_bag_size", "2"]


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
    parser = ladder.make_parser()
    args = parser.parse_args_and_config(LADDER_SHRUNK)[-1]
    ladder.run_baseline(functools.partial(train_variant, parser, LADDER_SHRUNK), args, [8, 16],
                        str(tmp_path / "ladder"), decay_fraction=0.25)
    for budget in (8, 16):
        independent = tmp_path / f"independent-{budget}"
        train_variant(parser, LADDER_SHRUNK, str(independent), tst_ratio=0,
                      **ladder.schedule(args, budget, decay_steps(budget, 0.25)))
        branched = step_losses(tmp_path / "ladder" / "baseline" / f"T{budget}")
        assert [step for step, _ in branched] == list(range(1, budget + 1))
        assert branched == step_losses(independent)
    assert sorted(os.listdir(tmp_path / "ladder" / "baseline")) == ["T16", "T8", "stable"]


@pytest.mark.slow
@needs_plots
def test_ladder_recipe_reports_and_resumes_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = [*LADDER_SHRUNK, "--budgets", "8,12", "--baseline_budgets", "16", "--ladder_dir", str(tmp_path)]
    assert ladder.main([*argv, "--runs", "tst"]) is None  # the baseline is still to run: no report yet
    result = ladder.main([*argv, "--runs", "baseline"])
    report = (tmp_path / "s2-r0.5" / "ladder.md").read_text()
    assert [row["budget"] for row in result["rows"]] == [8, 12] and sorted(result["frontier"]) == [8, 12, 16]
    for row in result["rows"]:
        tst = json.loads((tmp_path / "s2-r0.5" / f"T{row['budget']}" / "eval_results.json").read_text())
        assert row["tst_loss"] == tst["eval_loss"] and row["switch_step"] == row["budget"] // 2
        expected = speedup_at(result["frontier"], row["budget"], row["tst_loss"])
        assert row["speedup"] == pytest.approx(expected["speedup"])
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


def test_a_baseline_budget_behind_the_stable_run_is_refused(tmp_path, monkeypatch):
    """A budget added after the stable run went past its branch step cannot be branched any more."""
    monkeypatch.chdir(REPO)
    checkpoint = tmp_path / "baseline" / "stable" / "checkpoint-50"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    parser = ladder.make_parser()
    args = parser.parse_args_and_config(LADDER_SHRUNK)[-1]
    with pytest.raises(ValueError, match=r"budget 40 branches at step 36, but the stable run .* \(step 50\)"):
        ladder.run_baseline(functools.partial(train_variant, parser, LADDER_SHRUNK), args, [40], str(tmp_path),
                            decay_fraction=0.1)

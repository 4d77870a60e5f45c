"""Equal-loss speedup against a hand-computed interpolation, and `hf-tst compare` and `hf-tst sweep` end to end
(shrunk), through the installed command."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SHRUNK, needs_eval, needs_plots, run_hf_tst

from hf_tst.compare import equal_loss_speedup, loss_at, steps_to_reach

REPO = Path(__file__).resolve().parents[1]
BASELINE = [(100, 6.0, 0), (200, 5.0, 0), (300, 4.5, 0), (400, 4.2, 0)]


def test_speedup_interpolates_the_baseline_curve():
    # TST ends at 4.8 after 200 steps; the baseline crosses 4.8 between steps 200 (5.0) and 300 (4.5):
    # 200 + (5.0 - 4.8) / (5.0 - 4.5) * 100 = 240 steps, so 240 / 200 = 1.2x.
    result = equal_loss_speedup(BASELINE, [(100, 6.5, 0), (200, 4.8, 0)])
    assert result["baseline_steps_to_tst_loss"] == pytest.approx(240.0)
    assert result["speedup"] == pytest.approx(1.2)
    assert steps_to_reach(BASELINE, 6.5) == 100.0


def test_loss_at_interpolates_between_evaluations():
    assert loss_at(BASELINE, 250) == pytest.approx(4.75)  # halfway from 5.0 (200) to 4.5 (300)
    assert loss_at(BASELINE, 100) == 6.0 and loss_at(BASELINE, 400) == 4.2
    assert loss_at(BASELINE, 50) is None and loss_at(BASELINE, 500) is None


def test_speedup_says_when_the_baseline_never_gets_there():
    result = equal_loss_speedup(BASELINE, [(400, 4.0, 0)])
    assert result["baseline_steps_to_tst_loss"] is None and result["speedup"] is None


@pytest.mark.slow
@needs_eval
@needs_plots
def test_hf_tst_compare_exits_0_with_its_own_verdict_once_and_writes_a_report(tmp_path):
    result = run_hf_tst("compare", *TINY_SHRUNK, "--compare_dir", str(tmp_path), "--eval_limit", "10",
                        "--max_steps", "6", "--tst_ratio", "0.5", "--eval_steps", "2", "--logging_steps", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    data = json.loads((tmp_path / "report.json").read_text())
    assert [step for step, _, _ in data["tst"]["curve"]][:3] == [2, 3, 4]  # every 2 steps, plus the switch (3)
    tst_tokens, baseline_tokens = data["tst"]["curve"][-1][2], data["baseline"]["curve"][-1][2]
    assert tst_tokens > baseline_tokens  # equal steps, more data for TST
    assert data["speedup"]["tst_final_eval_loss"] == data["tst"]["curve"][-1][1]
    assert ("equal-loss speedup" in report) == (data["speedup"]["speedup"] is not None)
    verdict = next(line for line in report.splitlines() if line.startswith("The baseline "))
    finished = [line for line in result.stdout.splitlines() if line.startswith("final eval loss")]
    assert result.stdout.count(verdict) == 1 and len(finished) == 2  # and each run's own closing line
    closing_note = yaml.safe_load((REPO / "recipes" / "configs" / "tiny.yaml").read_text())["closing_note"]
    assert closing_note not in result.stdout  # the main job's sentence, about another run
    assert result.stdout.rstrip().endswith(f"report.md, report.json and curves.png in {tmp_path}")
    assert "| tst | 6 |" in report and "| baseline | 6 |" in report
    assert "At the switch (step 3)" in report and "against the baseline's" in report
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@needs_plots
def test_hf_tst_sweep_exits_0_and_tabulates_a_grid_against_one_baseline(tmp_path):
    result = run_hf_tst("sweep", *TINY_SHRUNK, "--sweep_dir", str(tmp_path), "--bag_sizes", "2", "4", "--ratios",
                        "0.5", "--max_steps", "4", "--eval_steps", "100")
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert [(run["s"], run["r"]) for run in saved["runs"]] == [(2, 0.5), (4, 0.5)]
    for run in saved["runs"]:  # each cell is the final eval loss its own run reported
        results = json.loads((tmp_path / f"s{run['s']}-r0.5" / "eval_results.json").read_text())
        assert run["eval_loss"] == results["eval_loss"]
    assert saved["baseline"] == json.loads((tmp_path / "baseline" / "eval_results.json").read_text())["eval_loss"]
    table = (tmp_path / "sweep.md").read_text()
    assert "| s \\ r | 0.5 |" in table and table.count("\n| ") == 3 and table in result.stdout
    assert (tmp_path / "heatmap.png").read_bytes()[:4] == b"\x89PNG"

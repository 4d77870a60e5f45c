"""The process-tree faults, through the real `hf-tst train` (benchmarks/faults.py injects them): a SIGTERM to the
whole process tree with DataLoader workers, one whose save outlasts accelerate's 5 s grace while a second SIGTERM
arrives, and the same with two processes under torch elastic. Each must exit with status 75 after a whole
checkpoint at the signalled step, and the resumed run must log the uninterrupted run's losses."""

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from faults import Cases  # noqa: E402


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return Cases(str(tmp_path_factory.mktemp("faults")))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["group_sigterm_with_workers", "slow_save_and_second_signal",
                                  "two_processes_slow_save"])
def test_a_group_signal_saves_a_whole_checkpoint_exits_75_and_resumes_exactly(cases, case):
    expected, observed, ok = getattr(cases, case)()
    assert ok, f"expected {expected}; observed {observed}"

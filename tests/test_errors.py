"""The two shapes of an error (hf_tst.errors): a usage mistake is one line, a runtime failure names its step."""

import pytest
from conftest import REPO

from hf_tst.errors import UsageError, failure_line, step_noted, usage_line
from hf_tst.parser import TSTParser
from hf_tst.scripts.train import make_parser


def test_a_usage_mistake_raised_in_a_dataloader_worker_is_still_its_own_one_line():
    """torch rewraps an exception raised in a worker with the worker's traceback in its message."""
    wrapped = UsageError("Caught UsageError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                         "last):\n  File \"x.py\", line 1, in f\nhf_tst.errors.UsageError: token id 300 in the data "
                         "lies outside\n")
    assert usage_line("train.py", wrapped) == "train.py: error: token id 300 in the data lies outside"
    assert usage_line("train.py", UsageError("two\nlines")) == "train.py: error: two lines"


@pytest.mark.parametrize("step, where", [(0, "before the first optimizer step"), (7, "after optimizer step 7")])
def test_a_runtime_failure_is_one_line_with_its_step(step, where):
    with pytest.raises(OSError) as raised, step_noted(lambda: step):
        raise OSError(28, "No space left on device\nmore detail")
    assert failure_line("hf-tst train", raised.value) == (f"hf-tst train: failed {where}: OSError: [Errno 28] No "
                                                          "space left on device")


def test_a_value_transformers_refuses_is_a_usage_mistake_and_what_it_calls_is_not(monkeypatch):
    parser = make_parser()
    base = ["--config", str(REPO / "recipes/configs/tiny.yaml"), "--output_dir", "unused", "--use_cpu", "true"]
    with pytest.raises(UsageError, match="logging_steps must be an integer if bigger than 1"):
        parser.parse_args_and_config([*base, "--logging_steps", "1.5"])

    def device_setup_fails(self):
        raise ValueError("MASTER_ADDR expected, but not set")  # as torch.distributed raises it

    monkeypatch.setattr("transformers.TrainingArguments._setup_devices", property(device_setup_fails))
    with pytest.raises(ValueError, match="MASTER_ADDR") as raised:
        parser.parse_args_and_config(base)
    assert not isinstance(raised.value, UsageError) and isinstance(parser, TSTParser)

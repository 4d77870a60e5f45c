"""Plan a TST run before any compute (`hf-tst plan`): see hf_tst/scripts/plan.py."""

from hf_tst.cli import run
from hf_tst.scripts.plan import main

if __name__ == "__main__":
    run(main)  # a mistake prints one line, `--debug` the traceback

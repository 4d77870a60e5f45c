"""The budget ladder: TST's equal-loss speedup against the step budget T, and the crossover budget.

    python recipes/ladder.py --config recipes/configs/tiny.yaml --budgets 500,1000,2000,4000

The same as `hf-tst ladder`: the script is `hf_tst.scripts.ladder`, whose docstring and `--help`
(every flag, with its help) say the rest.
"""

from hf_tst.cli import run
from hf_tst.scripts.ladder import main

if __name__ == "__main__":
    run(main)  # a mistake prints one line, `--debug` the traceback

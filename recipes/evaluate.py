"""Evaluate a checkpoint 0-shot with the EleutherAI harness (lm-eval): results.json and results.md.

    python recipes/evaluate.py outputs/tiny-tst [--tasks offline|paper|NAMES] [--limit N]

The same as `hf-tst evaluate`: the script is `hf_tst.scripts.evaluate`, whose docstring and `--help`
(every flag, with its help) say the rest.
"""

from hf_tst.cli import run
from hf_tst.scripts.evaluate import main

if __name__ == "__main__":
    run(main)  # a mistake prints one line, `--debug` the traceback

"""Push an existing TST output folder (model, tokenizer, model card, loss curve) to the Hub.

    python recipes/push.py OUTPUT_DIR REPO_ID [--revision main] [--private]

The same as `hf-tst push`: the script is `hf_tst.scripts.push`, whose docstring and `--help`
(every flag, with its help) say the rest.
"""

from hf_tst.cli import run
from hf_tst.scripts.push import main

if __name__ == "__main__":
    run(main)  # a mistake prints one line, `--debug` the traceback

"""Pre-train a causal LM with Token-Superposition Training.

    accelerate launch recipes/train.py --config recipes/configs/tiny.yaml [--any_field value ...]

The same as `hf-tst train`: the script is `hf_tst.scripts.train`, whose docstring and `--help`
(every flag, with its help) say the rest.
"""

from hf_tst.cli import run
from hf_tst.scripts.train import main

if __name__ == "__main__":
    run(main)  # a mistake prints one line, `--debug` the traceback

"""TST against its baseline at equal FLOPs: one config run twice, then a report.

    python recipes/compare.py --config recipes/configs/tiny.yaml [--compare_dir DIR] [--field value ...]

The same as `hf-tst compare`: the script is `hf_tst.scripts.compare`, whose docstring and `--help`
(every flag, with its help) say the rest.
"""

from hf_tst.cli import run
from hf_tst.scripts.compare import main

if __name__ == "__main__":
    run(main)  # a mistake prints one line, `--debug` the traceback

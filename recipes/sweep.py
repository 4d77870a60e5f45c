"""An (s, r) grid of TST runs against one baseline, like the paper's Table 4: final eval loss of each.

    python recipes/sweep.py --config recipes/configs/tiny.yaml --bag_sizes 2,4,6,8 --ratios 0.2,0.3,0.4

The same as `hf-tst sweep`: the script is `hf_tst.scripts.sweep`, whose docstring and `--help`
(every flag, with its help) say the rest.
"""

from hf_tst.cli import run
from hf_tst.scripts.sweep import main

if __name__ == "__main__":
    run(main)  # a mistake prints one line, `--debug` the traceback

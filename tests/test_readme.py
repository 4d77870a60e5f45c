"""The README's Python blocks run as pasted: each one, from the repository root, offline, in a fresh
interpreter, within a minute."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```$", (REPO / "README.md").read_text(), flags=re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_python_block_of_the_readme_runs_as_pasted(block, tmp_path):
    """Run where the README says (the repository root, whose `recipes/` the blocks read), with the folders they
    write (`outputs/`) and the caches in a scratch copy of the root, so the checkout stays as it was."""
    for entry in REPO.iterdir():  # the root as a user's clone has it: recipes/ and the rest, linked
        if entry.name not in ("outputs", ".git"):
            (tmp_path / entry.name).symlink_to(entry)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

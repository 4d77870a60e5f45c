"""The README is one screen over the docs, and the Python blocks of the README and of every page in docs/ run as
pasted: each one, from the repository root, offline, in a fresh interpreter, within a minute. Code that cannot (a
Hub id) goes in a bash or text block."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a markdown page, in order (a block may sit indented in a list item)."""
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```$", page.read_text(), flags=re.S | re.M)
    return [re.sub(rf"^{indent}", "", block, flags=re.M) for indent, block in blocks]


BLOCKS = {f"{page.relative_to(REPO).as_posix()}-block{i}": block
          for page in PAGES for i, block in enumerate(python_blocks(page))}


def test_the_readme_is_one_screen_that_says_early_when_tst_pays_and_links_every_guide():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200 and "## When TST pays" in lines[:60]
    main_job = "recipes/train.py --config recipes/configs/tiny.yaml"  # the way users launch it, and ours
    assert any(line.startswith(f"accelerate launch {main_job}") for line in lines)
    assert any(line.startswith("hf-tst train --config recipes/configs/tiny.yaml") for line in lines)
    guides = {page.name for page in (REPO / "docs").glob("*.md")} - {"index.md"}
    assert {name for name in guides if f"(docs/{name}" not in "\n".join(lines)} == set()


def test_the_readme_and_the_docs_have_python_blocks():
    assert sum(name.startswith("README.md-") for name in BLOCKS) >= 2  # own script: map-style and streamed
    assert any(name.startswith("docs/") for name in BLOCKS)


@pytest.mark.slow
@pytest.mark.parametrize("block", list(BLOCKS.values()), ids=list(BLOCKS))
def test_every_python_block_of_the_readme_and_the_docs_runs_as_pasted(block, tmp_path):
    """Run where the README says (the repository root, whose `recipes/` the blocks read), with the folders they
    write (`outputs/`) and the caches in a scratch copy of the root, so the checkout stays as it was."""
    for entry in REPO.iterdir():  # the root as a user's clone has it: recipes/ and the rest, linked
        if entry.name not in ("outputs", ".git"):
            (tmp_path / entry.name).symlink_to(entry)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

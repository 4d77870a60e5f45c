#!/usr/bin/env bash
# The resume and fault tests against the lowest transformers that pyproject.toml allows, installed over .venv's
# newest one: before 5.25 (Trainer.get_resumed_dataloader) TSTTrainer places a resumed stream through another hook.
set -euo pipefail
cd "$(dirname "$0")/.."
LOWEST=$(.venv/bin/python -c "import re, tomllib
dependencies = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']
print(next(re.search(r'>=([0-9.]+)', d).group(1) for d in dependencies if d.startswith('transformers')))")
TARGET="$(mktemp -d)"
trap 'rm -rf "$TARGET"' EXIT
.venv/bin/pip install -q --no-deps --target "$TARGET" "transformers==$LOWEST"
PYTHONPATH="$TARGET" .venv/bin/python -c "import transformers; print('transformers', transformers.__version__)"
PYTHONPATH="$TARGET" HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow" \
    tests/test_cluster_faults.py tests/test_resume.py tests/test_preemption.py

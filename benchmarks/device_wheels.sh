#!/usr/bin/env bash
# The wheels the GPU machine's image lacks for hf_tst and the screen, at the versions CI tests (.venv, built by
# `make test`), for x86-64 Linux and the image's Python; device_wheels.py's docstring says which and why.
#   bash benchmarks/device_wheels.sh DIR [PYTHON_VERSION]      # DIR: .whl (ignored by git); default Python 3.12
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python=${DEVICE_WHEELS_PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || { echo "device_wheels.sh: no $python; run make test first (it builds .venv with the versions CI tests)" >&2; exit 2; }
exec "$python" "$repo/benchmarks/device_wheels.py" "$@"

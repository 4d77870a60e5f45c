#!/usr/bin/env bash
# The GPU screen's path as a device runs it, emulated on CPU (CI runs it; so can anyone): a venv like the device
# image (the image's packages that hf_tst needs, at its recorded versions; no datasets; this machine's CPU torch;
# hf_tst not installed), the wheel set downloaded for this Python and installed the device way, then the
# screen's dry run through the same entry point, with bf16 (CPU autocast), 2 dataloader workers and $OUT set. Its
# report must come back under $OUT, naming both runs' losses, within what a device returns (8 files at the top).
# The venv is cached, keyed by the image's versions and this Python.
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# The image's packages that hf_tst's requirements reach, at the image's versions; torch is this machine's CPU
# build and numpy the registry's (the image's 2.5.2 is not on it).
torch=${TORCH:-torch==2.13.0}
image=$(bash benchmarks/device_wheels.sh "$scratch/wheels" "$python_version" --image_requirements |
        sed -e '/^torch==/d' -e 's/^numpy==.*/numpy/' | tr '\n' ' ')
venv=${XDG_CACHE_HOME:-$HOME/.cache}/hf_tst/device-image-$(echo "$torch $image $python_version" | sha256sum | cut -c1-12)
if [ ! -f "$venv/.complete" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "$torch" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}  # the Makefile's torch
    # shellcheck disable=SC2086 # one requirement a word
    "$venv/bin/pip" install -q $image
    touch "$venv/.complete"
fi
if (cd / && "$venv/bin/python" -c 'import datasets' 2> /dev/null || "$venv/bin/python" -c 'import hf_tst' 2> /dev/null); then
    echo "device_path.sh: $venv holds datasets or hf_tst, which the device image does not"; exit 1
fi
bash benchmarks/device_wheels.sh "$scratch/wheels" "$python_version"
OUT="$scratch/out" DEVICE_WHEELS="$scratch/wheels" DEVICE_SITE="$scratch/site" PATH="$venv/bin:$PATH" \
    bash benchmarks/gpu_screen.sh --dry-run > "$scratch/screen.log" 2>&1 || { tail -40 "$scratch/screen.log"; exit 1; }
report="$scratch/out/screen-dry-run.md"
[ "$(grep -cE '^\| (baseline|tst) \| [0-9]+\.[0-9]{4} \|' "$report")" = 2 ] || { cat "$report"; exit 1; }
returned=$(find "$scratch/out" -type f | wc -l)
if [ "$returned" -gt 8 ] || [ -n "$(find "$scratch/out" -mindepth 2)" ]; then ls -R "$scratch/out"; exit 1; fi
grep -E '^\*\*TST|^steps = ' "$report"
echo "device path: the dry run's report came back under \$OUT ($returned files) in a venv like the device image"

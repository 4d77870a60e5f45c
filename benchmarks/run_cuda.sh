#!/usr/bin/env bash
# The GPU run: CUDA checks of the fused loss (tests/test_cuda.py), then the loss and step benchmarks
# in bf16 on one CUDA device, tables written to benchmarks/results/ (or the folder given), named after
# the GPU (loss-h200.md, step-smollm2-135m-h200.md, ...).
#   bash benchmarks/run_cuda.sh [results folder]
# Each part runs even if an earlier one failed; the exit status says whether all passed.
set -uo pipefail
results=${1:-benchmarks/results}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | awk '{print tolower($NF)}')
status=0
run() { echo "== $*"; "$@" || status=1; }

if python -c "import liger_kernel.transformers.functional" 2>/dev/null; then
    echo "Liger Kernel installed: s=1 on CUDA runs its fused linear cross-entropy"
else
    echo "Liger Kernel not installed: s=1 runs hf_tst's chunked head"
fi
run python -m pytest -q --noconftest -p no:cacheprovider tests/test_cuda.py
run python benchmarks/loss.py --device cuda --output "$results/loss-$gpu.md"
run python benchmarks/step.py --model smollm2-135m --device cuda --batch_size 16 --block_size 2048 \
    --output "$results/step-smollm2-135m-$gpu.md"
run python benchmarks/step.py --model 50m --device cuda --batch_size 32 --block_size 1024 \
    --output "$results/step-50m-$gpu.md"
run python benchmarks/step.py --model tiny --device cuda --output "$results/step-tiny-$gpu.md"
exit $status

#!/usr/bin/env bash
# The GPU run, one command of at most ~9 minutes on an H200: CUDA checks of the fused loss, eager
# and compiled (tests/test_cuda.py); the loss benchmark with every loss kernel (Liger Kernel's for
# s = 1 when installed); the data path (CPU batch preparation, then 50M-parameter steps at B = 32,
# L = 1024, on random blocks and on the embedded corpus streamed with 0 and 4 DataLoader workers);
# the SmolLM2-135M step benchmark; and the two paths never run before, FSDP2 through
# recipes/accelerate/fsdp.yaml and fp16, each through both phases with TSTTrainer. Tables go to
# benchmarks/results/ (or the folder given), named after the GPU, each headed by the hardware line.
#   bash benchmarks/run_cuda.sh [results folder]
# Each part runs even if an earlier one failed; the exit status says whether all passed.
set -uo pipefail
results=${1:-benchmarks/results}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | awk '{print tolower($NF)}')
versions=$(python -c 'import importlib.util, torch, transformers
from importlib.metadata import version
liger = version("liger-kernel") if importlib.util.find_spec("liger_kernel") else "not installed"
print("torch %s, transformers %s, Liger Kernel %s" % (torch.__version__, transformers.__version__, liger))')
hardware="<!-- $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) ($versions), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -I) -->"
status=0 skipped=()
# RUN_CUDA_DEADLINE: seconds this script may use (benchmarks/gpu_screen.sh passes what its session has left);
# a part that would start with less than a minute left is skipped and named at the end.
run() {
    local left=$(( ${RUN_CUDA_DEADLINE:-100000} - SECONDS ))
    if [ "$left" -lt 60 ]; then skipped+=("$*"); echo "== skipped (time): $*"; return 1; fi
    echo "== $*"; timeout $(( left < 240 ? left : 240 )) "$@" || status=1
}
table() { local file="$results/$1"; shift; run "$@" --output "$file" && sed -i "1i $hardware" "$file"; }
tiny=(--config recipes/configs/tiny.yaml --max_steps 40 --eval_steps 20 --save_strategy no --disable_tqdm true)

echo "$hardware"
run python -m pytest -q --noconftest -p no:cacheprovider tests/test_cuda.py
table "loss-$gpu.md" python benchmarks/loss.py --device cuda
table "data-$gpu.md" python benchmarks/data.py --batch_size 32 --block_size 1024
table "step-50m-$gpu.md" python benchmarks/step.py --model 50m --device cuda --batch_size 32 --block_size 1024
for workers in 0 4; do  # the data wait of a streamed corpus, tokenised and packed on the fly, without and with workers
    table "step-50m-streamed-w$workers-$gpu.md" python benchmarks/step.py --model 50m --device cuda --batch_size 32 \
        --block_size 1024 --streamed --workers "$workers"
done
table "step-smollm2-135m-$gpu.md" python benchmarks/step.py --model smollm2-135m --device cuda --batch_size 16 \
    --block_size 2048
run accelerate launch --config_file recipes/accelerate/fsdp.yaml --num_processes 1 recipes/train.py "${tiny[@]}" \
    --output_dir /tmp/hf-tst-fsdp2
run accelerate launch --num_processes 1 --mixed_precision fp16 recipes/train.py "${tiny[@]}" --fp16 true \
    --output_dir /tmp/hf-tst-fp16
for part in "${skipped[@]}"; do echo "skipped for lack of time: $part"; done
exit $status

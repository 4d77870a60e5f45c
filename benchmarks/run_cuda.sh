#!/usr/bin/env bash
# The GPU checklist, one device command of at most RUN_CUDA_SECONDS (540) wall from a bare machine: its own
# preflight (device_env.sh: the carried wheels installed, every import and version checked, the hardware line),
# then CUDA checks of the fused loss, eager and compiled (tests/test_cuda.py); the loss benchmark with every loss
# kernel (Liger Kernel's for s = 1 when installed); the data path (CPU batch preparation, then 50M-parameter steps
# at B = 32, L = 1024, on random blocks and on the embedded corpus streamed with 0 and 4 DataLoader workers); the
# SmolLM2-135M step benchmark; and the two paths never run before, FSDP2 through recipes/accelerate/fsdp.yaml and
# fp16, each through both phases with TSTTrainer. Its 6 tables and its log (7 files) land in $OUT when it is set,
# else in benchmarks/results/, named after the GPU, each table headed by the hardware line. A part that would
# start with less than a minute left is skipped and named at the end; the exit status says whether all passed.
#   bash benchmarks/run_cuda.sh       # on the device (benchmarks/README.md gives the exact call)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
start=$SECONDS budget=${RUN_CUDA_SECONDS:-540} results=${OUT:-benchmarks/results}
gpu=$(bash benchmarks/gpu_name.sh)
[ -n "$gpu" ] || { echo "run_cuda.sh: no GPU here (nvidia-smi lists none)"; exit 2; }
mkdir -p "$results"
DEVICE_LOG="$results/run-cuda-$gpu.log" . benchmarks/device_env.sh
status=0 skipped=()
run() {
    local left=$((budget - (SECONDS - start)))
    if [ "$left" -lt 60 ]; then skipped+=("$*"); echo "== skipped (time): $*"; return 1; fi
    echo "== $*"; timeout $(( left < 240 ? left : 240 )) "$@" || { status=1; return 1; }
}
table() { local file="$results/$1"; shift; run "$@" --output "$file" && sed -i "1i <!-- $HARDWARE -->" "$file"; }
tiny=(--config recipes/configs/tiny.yaml --max_steps 40 --eval_steps 20 --save_strategy no --disable_tqdm true)

echo "$HARDWARE"
run python3 -m pytest -q --noconftest -p no:cacheprovider tests/test_cuda.py
table "loss-$gpu.md" python3 benchmarks/loss.py --device cuda
table "data-$gpu.md" python3 benchmarks/data.py --batch_size 32 --block_size 1024
table "step-50m-$gpu.md" python3 benchmarks/step.py --model 50m --device cuda --batch_size 32 --block_size 1024
for workers in 0 4; do  # the data wait of a streamed corpus, tokenised and packed on the fly, without and with workers
    table "step-50m-streamed-w$workers-$gpu.md" python3 benchmarks/step.py --model 50m --device cuda --batch_size 32 \
        --block_size 1024 --streamed --workers "$workers"
done
table "step-smollm2-135m-$gpu.md" python3 benchmarks/step.py --model smollm2-135m --device cuda --batch_size 16 \
    --block_size 2048
run accelerate launch --config_file recipes/accelerate/fsdp.yaml --num_processes 1 recipes/train.py "${tiny[@]}" \
    --output_dir /tmp/hf-tst-fsdp2
run accelerate launch --num_processes 1 --mixed_precision fp16 recipes/train.py "${tiny[@]}" --fp16 true \
    --output_dir /tmp/hf-tst-fp16
for part in "${skipped[@]}"; do echo "skipped for lack of time: $part"; done
echo "run_cuda.sh: done in $((SECONDS - start)) s of $budget; tables and log in $results"
exit $status

#!/usr/bin/env bash
# The 100M GPU screen: does TST beat its baseline at the smallest scale where it has been reported to?
# One command on one GPU: a baseline and TST (s=6, r=0.3) of the same ~100M-parameter Llama, same recipe
# (recipes/configs/screen-100m.yaml: bf16, AdamW, warmup-stable-decay), same steps, run as two concurrent
# processes; then a report (both final held-out losses, the difference in nats, the curves, the epochs each
# read, wall time, the hardware line), then benchmarks/run_cuda.sh with the time left of the session.
#
# Sizing (H200, 989 dense bf16 TFLOP/s):
#   model     12 layers x width 768 (12 heads of 64, MLP 2,048), untied 8,192-token embeddings: 97.5M parameters,
#             N = 91.2M matmul weights (the head included, the input table not)
#   step      B = 16 rows x L = 1,024 positions = 16,384 positions; 6 N + 12 layers heads 64 L per position:
#             8.97e12 + 1.86e12 = 1.08e13 FLOPs; TST's superposition steps run the same positions on 6x the data
#   steps     2,500 per run (750 superposition steps for TST); both runs 5.4e16 FLOPs
#   time      at an assumed 20% MFU for the two processes together (a small model: launch-bound; two processes
#             fill the GPU better than one): 5.4e16 / 198e12 = 273 s, plus ~90 s of start, data and evaluation
#   data      the study corpus (benchmarks/study_corpus.py, 27.7M tokens) as uint16 Parquet blocks (25.1 MiB,
#             under the 64 MiB a device run carries): the baseline reads 41M tokens (1.5 epochs), TST 102M
#             (750 x 6 + 1,750 steps x 16,384: 3.7 epochs), both under 4
#
#   bash benchmarks/gpu_screen.sh             # the screen; needs outputs/screen-data (or outputs/study-corpus)
#   bash benchmarks/gpu_screen.sh --dry-run   # the same script end to end at toy size on CPU (< 2 minutes)
#
# Before a device session, here: build the study corpus and its blocks, then carry outputs/screen-data:
#   python benchmarks/study_corpus.py && python benchmarks/screen_data.py --train outputs/study-corpus/train.jsonl \
#       --validation outputs/study-corpus/validation.jsonl --out_dir outputs/screen-data
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
SESSION_SECONDS=${SESSION_SECONDS:-840}  # the device time this command may use in all (15 minutes, less a margin)
start=$SECONDS

if [ "${1:-}" = "--dry-run" ]; then
    out=outputs/screen-dry-run data=$out/data hardware="CPU dry run ($(nproc) cores), toy size"
    rm -rf "$out"
    python benchmarks/screen_data.py --train recipes/data/python-docs/train.jsonl.gz \
        --validation recipes/data/python-docs/validation.jsonl.gz --block_size 64 --shards 2 \
        --max_validation_blocks 32 --out_dir "$data"
    size=(--config_overrides hidden_size=64,intermediate_size=128,num_hidden_layers=2,num_attention_heads=4,num_key_value_heads=4,head_dim=16
          --block_size 64 --per_device_train_batch_size 8 --max_steps 60 --warmup_steps 6
          --lr_scheduler_kwargs '{"num_decay_steps": 6, "decay_type": "linear"}' --eval_steps 20 --max_eval_blocks 32
          --logging_steps 10 --bf16 false --use_cpu true --dataloader_num_workers 0)
    report=$out/report.md
else
    out=outputs/screen data=outputs/screen-data
    hardware="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
    if [ ! -f "$data/manifest.json" ]; then
        [ -f outputs/study-corpus/train.jsonl ] || { echo "no $data: build it first (see this script's header)"; exit 2; }
        python benchmarks/screen_data.py --train outputs/study-corpus/train.jsonl \
            --validation outputs/study-corpus/validation.jsonl --out_dir "$data"
    fi
    size=()
    gpu=$(echo "$hardware" | awk '{print tolower($NF)}')
    report=benchmarks/results/screen-100m-$gpu.md
fi
hardware="$hardware; torch $(python -c 'import torch; print(torch.__version__)'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -I)"
files=(--train_files "$data/train-*.parquet" --validation_files "$data/validation.parquet")

train() {  # RUN_NAME [flags]: one run of the screen's recipe, in the background
    local name=$1; shift
    mkdir -p "$out/$name"
    python recipes/train.py --config recipes/configs/screen-100m.yaml "${files[@]}" "${size[@]}" \
        --output_dir "$out/$name" "$@" > "$out/$name.log" 2>&1 &
}
train_start=$SECONDS
train baseline --tst_ratio 0
train tst
status=0
wait -n || status=1
wait -n || status=1
[ $status = 0 ] || { tail -20 "$out"/*.log; echo "a screen run failed"; exit 1; }
python benchmarks/screen_report.py --runs "$out/baseline" "$out/tst" --manifest "$data/manifest.json" \
    --hardware "$hardware" --seconds $((SECONDS - train_start)) --output "$report"
echo "screen: $((SECONDS - start)) s"

if [ "${1:-}" != "--dry-run" ]; then  # the rest of the device checklist, with the time that is left
    RUN_CUDA_DEADLINE=$((SESSION_SECONDS - (SECONDS - start))) bash benchmarks/run_cuda.sh || status=1
fi
exit $status

#!/usr/bin/env bash
# The GPU screen: does TST beat its baseline at the shape of the smallest positive result below the paper's 270M
# (a ~100M replication: 12 layers, width 512, context 2,048, 3,000 steps, s=6 with 900 superposition steps)?
# One device command of at most SCREEN_SECONDS (540) wall from a bare machine, everything included:
#   1. preflight (device_env.sh): the carried wheels installed, every import and version checked, the GPU, torch,
#      CUDA, bf16 and flash attention reported; then 32 steps of both runs at full size as the screen runs them
#      (bf16, dataloader workers, concurrently): step time, peak memory and MFU of each phase;
#   2. the step count that the measured speed fits in the time left, at most the replication's 3,000, with warm-up,
#      decay and evaluations placed by it, the same for both runs (screen_plan.py: the arithmetic);
#   3. baseline and TST s=6, r=0.3 (recipes/configs/screen.yaml) as two concurrent processes on the one GPU;
#   4. the report (screen_report.py): both held-out losses and their difference in nats, each run's regime beside
#      the published ones, the preflight's figures, the curves, the wall time and the hardware line.
# What comes back lands in $OUT when it is set (7 files: report, curves, this script's log, each run's log and
# trainer_state.json), else in benchmarks/results/ (--dry-run: outputs/screen-dry-run/), named screen-<gpu>*.
#
#   bash benchmarks/device_prepare.sh         # here, once: the study corpus's blocks and the wheels that travel
#   bash benchmarks/gpu_screen.sh             # on the device (benchmarks/README.md gives the exact call)
#   bash benchmarks/gpu_screen.sh --dry-run   # the same path at toy size on CPU: bf16 autocast, 2 workers (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
if [ "${1:-}" = "--dry-run" ]; then
    budget=${SCREEN_SECONDS:-300} min_steps=20 work=outputs/screen-dry-run name=screen-dry-run
    data=$work/data results=${OUT:-$work}
    size=(--config_overrides hidden_size=64,intermediate_size=128,num_hidden_layers=2,num_attention_heads=4,num_key_value_heads=4,head_dim=16
          --block_size 64 --per_device_train_batch_size 8 --max_steps 60 --warmup_steps 6 --eval_steps 20
          --lr_scheduler_kwargs '{"num_decay_steps": 6, "decay_type": "linear"}' --max_eval_blocks 32
          --logging_steps 10 --use_cpu true)
else
    budget=${SCREEN_SECONDS:-540} min_steps=300 work=outputs/screen data=outputs/screen-data
    results=${OUT:-benchmarks/results} size=()
    gpu=$(bash benchmarks/gpu_name.sh)
    [ -n "$gpu" ] || { echo "gpu_screen.sh: no GPU here (nvidia-smi lists none); --dry-run runs on CPU"; exit 2; }
    [ -f "$data/manifest.json" ] || { echo "gpu_screen.sh: no $data; build it here with bash benchmarks/device_prepare.sh and carry it"; exit 2; }
    name=screen-$gpu
fi
rm -rf "$work/preflight-"* "$work/baseline"* "$work/tst"*
mkdir -p "$work" "$results"
DEVICE_LOG="$results/$name.log" . benchmarks/device_env.sh
echo "$HARDWARE"
if [ -n "${size[*]}" ]; then  # the dry run's data: the embedded corpus at toy size
    python3 benchmarks/screen_data.py --train recipes/data/python-docs/train.jsonl.gz \
        --validation recipes/data/python-docs/validation.jsonl.gz --block_size 64 --shards 2 \
        --max_validation_blocks 32 --out_dir "$data" > "$work/data.log" 2>&1 || { cat "$work/data.log"; exit 1; }
fi
run=(--config recipes/configs/screen.yaml --train_files "$data/train-*.parquet" --validation_files
     "$data/validation.parquet" "${size[@]}")

both() {  # PREFIX LOGS TST_RATIO [flags]: baseline and TST as two concurrent processes, each stopped where the
    # budget ends (less the report's time) and the other stopped as soon as one fails; a failure stops the screen
    local prefix=$1 logs=$2 ratio=$3 left=$((budget - (SECONDS - start) - 20)) pids=(); shift 3
    [ "$left" -gt 0 ] || { echo "gpu_screen.sh: no time left for the ${prefix}runs"; exit 1; }
    timeout "$left" python3 recipes/train.py "${run[@]}" --output_dir "$work/${prefix}baseline" --tst_ratio 0 "$@" \
        > "$logs${prefix}baseline.log" 2>&1 & pids+=($!)
    timeout "$left" python3 recipes/train.py "${run[@]}" --output_dir "$work/${prefix}tst" \
        ${ratio:+--tst_ratio "$ratio"} "$@" > "$logs${prefix}tst.log" 2>&1 & pids+=($!)
    if ! wait -n "${pids[@]}" 2> /dev/null || ! wait -n "${pids[@]}" 2> /dev/null; then
        kill "${pids[@]}" 2> /dev/null || true; wait "${pids[@]}" 2> /dev/null || true
        tail -n 15 "$logs${prefix}baseline.log" "$logs${prefix}tst.log"
        echo "gpu_screen.sh: a ${prefix}run failed or ran past the budget (its log's end above); stopped after" \
             "$((SECONDS - start)) s"
        exit 1
    fi
}

echo "== preflight: 32 steps of each run at full size, concurrently (TST: 12 superposition, 20 recovery)"
preflight_start=$SECONDS
both preflight- "$work/" 0.375 --max_steps 32 --logging_steps 4 --eval_strategy no --warmup_steps 2 \
    --lr_scheduler_kwargs '{"num_decay_steps": 2, "decay_type": "linear"}'
python3 benchmarks/screen_plan.py --preflight "$work/preflight-baseline" "$work/preflight-tst" \
    --wall $((SECONDS - preflight_start)) --seconds_left $((budget - (SECONDS - start))) --min_steps "$min_steps" \
    --args_out "$work/plan.args" --json_out "$work/plan.json" -- "${run[@]}" --output_dir "$work/tst"
mapfile -t plan < "$work/plan.args"

echo "== the screen: baseline and TST, concurrently ($((SECONDS - start)) s in)"
train_start=$SECONDS
both "" "$results/$name-" "" "${plan[@]}"
train_seconds=$((SECONDS - train_start))
for run_name in baseline tst; do
    cp "$work/$run_name/trainer_state.json" "$results/$name-$run_name-trainer_state.json"
done
python3 benchmarks/screen_report.py --runs "$work/baseline" "$work/tst" --manifest "$data/manifest.json" \
    --plan "$work/plan.json" --hardware "$HARDWARE" --seconds "$train_seconds" --wall $((SECONDS - start)) \
    --output "$results/$name.md"
echo "gpu_screen.sh: done in $((SECONDS - start)) s of $budget; the report and its files are in $results"

#!/usr/bin/env bash
# The CPU budget-ladder study behind "When TST pays" in docs/comparing.md (results in benchmarks/results/ladder-*).
# The tiny default (3M-parameter Llama, B=16, L=128, lr 3e-3, WSD) on the ~28M-token study corpus, so
# that no run reads a token twice: TST budgets 500-4,000 steps for (s, r) = (6, 0.3), the paper's best
# dense setting, and (4, 0.2); one shared baseline up to 6,000 steps. Four single-threaded processes
# share the two cores (about 0.46 s a step each when two run); about 90 minutes on this repository's
# 2-core machine. Rerunning resumes what is unfinished.
#   apt-get install -y --no-install-recommends rust-doc perl-doc postgresql-doc-15 openjdk-17-doc python-django-doc
#   bash benchmarks/ladder_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
mkdir -p outputs
[ -f outputs/study-corpus/train.jsonl ] || python benchmarks/study_corpus.py
LADDER=(python recipes/ladder.py --config recipes/configs/tiny.yaml --disable_tqdm true
        --train_files outputs/study-corpus/train.jsonl --validation_files outputs/study-corpus/validation.jsonl
        --ladder_dir outputs/ladder-tiny --budgets 500 1000 2000 4000 --baseline_budgets 250 350 6000)
SECOND=(--tst_bag_size 4 --tst_ratio 0.2)

"${LADDER[@]}" --runs baseline > outputs/ladder-baseline.log 2>&1 &
"${LADDER[@]}" --runs tst > outputs/ladder-s6.log 2>&1 &
"${LADDER[@]}" "${SECOND[@]}" --runs tst --budgets 500 1000 2000 > outputs/ladder-second.log 2>&1 &
"${LADDER[@]}" "${SECOND[@]}" --runs tst --budgets 4000 > outputs/ladder-second-4000.log 2>&1 &
wait
"${LADDER[@]}" > /dev/null  # both reports, now that every run has finished
"${LADDER[@]}" "${SECOND[@]}" > /dev/null
mkdir -p benchmarks/results
for ladder in outputs/ladder-tiny/s*-r*; do
    name=$(basename "$ladder")
    cp "$ladder/ladder.md" "benchmarks/results/ladder-tiny-$name-cpu.md"
    cp "$ladder/ladder.png" "benchmarks/results/ladder-tiny-$name-cpu.png"
    cp "$ladder/ladder.json" "benchmarks/results/ladder-tiny-$name-cpu.json"
done

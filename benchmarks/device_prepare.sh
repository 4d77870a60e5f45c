#!/usr/bin/env bash
# Here, before a device session: build what travels with the repository to the GPU machine, and say its size.
#   - outputs/screen-data: the study corpus (benchmarks/study_corpus.py, from Debian's documentation packages,
#     installed here if missing) pre-tokenized into uint16 Parquet blocks of 2,048 (benchmarks/screen_data.py);
#   - .whl: the wheels the device image lacks, for its Python 3.12 (benchmarks/device_wheels.sh).
# Then it prints the carried total (the repository's files, the data, the wheels) against a device run's 64 MiB.
# benchmarks/README.md gives the device calls that carry them.
#   bash benchmarks/device_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
make -s .venv/bin/.installed
python=.venv/bin/python
if [ ! -f outputs/study-corpus/train.jsonl ]; then
    packages=(rust-doc perl-doc postgresql-doc-15 openjdk-17-doc python-django-doc)  # study_corpus.py's sources
    dpkg -s "${packages[@]}" > /dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${packages[@]}" > /dev/null; }
    $python benchmarks/study_corpus.py
fi
block_size=$(grep -E '^block_size:' recipes/configs/screen.yaml | awk '{print $2}')
built=$($python -c 'import json; print(json.load(open("outputs/screen-data/manifest.json"))["block_size"])' \
    2> /dev/null || true)
if [ "$built" != "$block_size" ]; then
    rm -rf outputs/screen-data
    $python benchmarks/screen_data.py --train outputs/study-corpus/train.jsonl \
        --validation outputs/study-corpus/validation.jsonl --block_size "$block_size" --out_dir outputs/screen-data
fi
bash benchmarks/device_wheels.sh .whl 3.12
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo -dirty)" > .whl/COMMIT  # a device copy has no .git
mib() { awk '{printf "%.1f", $1 / 1048576}'; }
repository=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1 | mib)
data=$(du -cb outputs/screen-data | tail -1 | cut -f1 | mib)
wheels=$(du -cb .whl | tail -1 | cut -f1 | mib)
echo "carried: repository $repository MiB + data $data MiB + wheels $wheels MiB = $(echo "$repository $data $wheels" |
    awk '{printf "%.1f", $1 + $2 + $3}') MiB of a device run's 64"

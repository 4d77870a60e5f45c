# shellcheck shell=bash
# Sourced first thing by the device scripts (gpu_screen.sh, run_cuda.sh). A device gets a plain copy of the
# repository on its own image, so: the repository goes on PYTHONPATH (nothing is installed); the wheels carried in
# .whl/ (or DEVICE_WHEELS; benchmarks/device_wheels.sh: what the image lacks) are installed the device way, into
# DEVICE_SITE, which goes on PYTHONPATH after it; then benchmarks/preflight.py checks every import and version and
# tries bf16 and flash attention. Sets HARDWARE, the line every report carries (its commit from git, or from the
# COMMIT file benchmarks/device_prepare.sh leaves beside the wheels: a device copy has no .git); a problem stops the
# calling script with one line. With DEVICE_LOG set, the calling script's output from here on also goes to that
# file, whole by the time the script exits.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${DEVICE_LOG:-}" ]; then
    exec > >(tee "$DEVICE_LOG") 2>&1
    device_log_writer=$!
    trap 'exec >&- 2>&-; wait $device_log_writer' EXIT
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
wheels=${DEVICE_WHEELS:-$repo/.whl}
if compgen -G "$wheels/*.whl" > /dev/null; then
    site=${DEVICE_SITE:-/tmp/hf-tst-site}
    rm -rf "$site"  # a warm machine's earlier install would leave other versions' metadata beside these
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$wheels"/*.whl || { echo "preflight: the wheels in $wheels did not install (above)"; exit 1; }
    export PYTHONPATH="$repo:$site${PYTHONPATH#"$repo"}"
fi
preflight_env="$(mktemp)"
python3 "$repo/benchmarks/preflight.py" --env "$preflight_env" || exit 1
# shellcheck source=/dev/null
. "$preflight_env"
rm -f "$preflight_env"
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || cat "$wheels/COMMIT" 2>/dev/null || echo unknown)
HARDWARE="$HARDWARE; commit $commit, $(date -I)"

#!/usr/bin/env bash
# The first GPU's name as the device scripts name their files: "NVIDIA H200" -> h200, "NVIDIA H100 80GB HBM3" ->
# h100-80gb-hbm3; nothing where nvidia-smi lists no GPU.
nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1 | sed 's/^NVIDIA //; s/ /-/g' |
    tr '[:upper:]' '[:lower:]'

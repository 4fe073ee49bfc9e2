#!/usr/bin/env bash
# GPU check of the search and retrain steps, for a CUDA machine (about 3-5 minutes on one GPU):
# correctness against fp32/fp64 first (exit 1 if it fails), then images/s, peak memory and the
# fraction of the GPU's measured bf16 matmul rate. Run from the repository root after `make setup`
# (or in the GPU image): bash bench/gpu_check.sh [--json bench/results/gpu_check.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA device visible to torch; run this on a GPU machine" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 480 "$PYTHON" bench/gpu_check.py --device cuda "$@"

#!/usr/bin/env bash
# GPU check, from the repository root of a checkout on a machine with a CUDA GPU and PyTorch
# (and dforce's dependencies) installed; no network and nothing beside the checkout needed:
#
#   bash scripts/gpu_check.sh                               # defaults below
#   DATA=/path/to/data MINUTES=3 PRESET=configs/video_mnist64.yaml bash scripts/gpu_check.sh
#   DEVICE=cpu TINY=1 bash scripts/gpu_check.sh             # the CPU dry run (about a minute; tests run it)
#
# Settings (environment):
#   DEVICE   cuda (default), cuda:N or cpu
#   OUT      output folder (default outputs/gpu_check): gpu.json, train/ (model, metrics.jsonl),
#            metrics.json, samples/
#   MINUTES  training minutes for PRESET (default 2; shortened to fit BUDGET)
#   PRESET   the config to train (default configs/video_mnist64.yaml)
#   DATA     optional folder laid out like ../shared/data (mnist/, timeseries/); without it Moving
#            MNIST renders from stand-in digits and dataset-shaped presets are reported as skipped
#   TINY     1: tiny models and batches (a dry run of every step)
#   BUDGET   whole seconds for the whole run (default 510, inside 9 minutes)
# It runs tests/test_cuda.py, measures steps/s and samples/s of every preset (fp32 and bf16),
# trains PRESET, samples from it, and writes OUT/gpu.json and, on CUDA without TINY,
# results/bench/gpu.json. Every file written must be under 16 MiB. Exit 0 only if all passed.
set -euo pipefail
cd "$(dirname "$0")/.."

# PYTHON: the interpreter (default the checkout's .venv when there is one, else python3)
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
args=(--device "${DEVICE:-cuda}" --out "${OUT:-outputs/gpu_check}" --minutes "${MINUTES:-2}"
      --preset "${PRESET:-configs/video_mnist64.yaml}" --budget "${BUDGET:-510}")
[ -n "${DATA:-}" ] && args+=(--data "$DATA")
[ "${TINY:-0}" = 1 ] && args+=(--tiny)
exec timeout --signal=INT "$(( ${BUDGET:-510} + 60 ))" "$PYTHON" scripts/gpu_check.py "${args[@]}" "$@"

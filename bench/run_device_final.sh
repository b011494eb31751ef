#!/usr/bin/env bash
# A short device call: every GPU test (decode kernels, prefill graphs, fused mix, WKV-7), then the public-API
# generation bench at 1k and 64k context with its time-to-first-token stages and decode kernel profile.
#   run(command="bash bench/run_device_final.sh")
# Variables: TEST_CAP, GEN_CAP (seconds), GEN_ARGS.
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-.device_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PWD/bench PYTHONUNBUFFERED=1
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } 2>&1 | tee "$OUT/env.txt"
timeout -k 5 "${TEST_CAP:-170}" python3 -m pytest -q -p no:cacheprovider tests/gpu tests/test_fused_mix.py 2>&1 \
  | tail -30 | tee "$OUT/gpu_tests.log"
timeout -k 5 "${GEN_CAP:-120}" python3 bench/generate_api.py ${GEN_ARGS:---ctx 1024 65536 --b16-ctx 0 --new 65 --reps 2} \
  --out "$OUT/generate_api.json" 2>&1 | grep -v -i warn | tee "$OUT/generate_api.log"

#!/usr/bin/env bash
# Every GPU test of the suite, then the WKV-7 kernels against fla on the same inputs, in one device call.
#   run(command="bash bench/run_device_all.sh", carry=[".whl"])   # .whl/wkv7: fla-core 0.6.0 (see run_device_wkv7.sh)
# Logs go to $OUT (or ./.device_out). Variables: T_TESTS, T_FLA (seconds), SHAPES.
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-.device_out}
mkdir -p "$OUT"
if ls .whl/wkv7/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/wkv7/*.whl \
    && FLA_PATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:$PWD/bench PYTHONUNBUFFERED=1
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } 2>&1 | tee "$OUT/env.txt"
# the GPU-marked tests, and the kernel/decoder tests that run on CUDA when there is one
timeout -k 5 "${T_TESTS:-200}" python3 -m pytest -q -p no:cacheprovider tests/gpu tests/test_wkv7_triton.py \
  tests/test_wkv7_seqpar.py tests/test_generate_fast.py 2>&1 | tail -40 | tee "$OUT/gpu_tests.log"
PYTHONPATH=$PYTHONPATH${FLA_PATH:+:$FLA_PATH} timeout -k 5 "${T_FLA:-200}" python3 bench/wkv7.py --seqpar \
  --shapes "${SHAPES:-2x16384x32,1x32768x32,8x4096x32,16x2048x16}" 2>&1 | tee "$OUT/wkv7_fla.log"

#!/usr/bin/env bash
# Sequence-parallel WKV-7 on the device machine, in one call: our kernels alone (sequential vs seqpar, then the
# passes alone at the long shapes), the seqpar GPU tests, then the same shapes with fla side by side.
# Logs go to $OUT (or ./.device_out).
#   run(command="bash bench/run_device_seqpar.sh", carry=[...with .whl/wkv7/fla_core-0.6.0-py3-none-any.whl])
set -o pipefail
OUT=${OUT:-.device_out}
mkdir -p "$OUT"
if ls .whl/wkv7/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/wkv7/*.whl \
    && FLA_PATH=/tmp/site
fi
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
SHAPES=${SHAPES:-2x16384x32,1x32768x32,8x4096x32,16x2048x16}
timeout "${T_OURS:-60}" python3 bench/wkv7.py --no-fla --seqpar --shapes "$SHAPES" 2>&1 | tee "$OUT/seqpar_ours.log"
timeout "${T_PASSES:-40}" python3 bench/wkv7.py --no-fla --seqpar --passes --shapes "${PASS_SHAPES:-1x32768x32}" 2>&1 \
  | grep -E "passes|card|FAIL|Error" | tee "$OUT/seqpar_passes.log"
timeout "${T_TESTS:-70}" python3 -m pytest -q -p no:cacheprovider tests/gpu/test_wkv7_gpu.py tests/test_wkv7_seqpar.py \
  -k "${TEST_K:-not decode}" 2>&1 | tail -30 | tee "$OUT/gpu_tests.log"
PYTHONPATH=src${FLA_PATH:+:$FLA_PATH} timeout "${T_FLA:-150}" python3 bench/wkv7.py --seqpar --shapes "$SHAPES" 2>&1 \
  | tee "$OUT/seqpar_fla.log"

#!/usr/bin/env bash
# The fused token mix on the device machine: its tests (CUDA), the operator bench, then training throughput of the
# 1.5B model without and with backbone fused_mix, compiled, in one process. Logs go to $OUT (or ./.device_out).
#   run(command="bash bench/run_device_fused_mix.sh")
# CTX (default "2048 16384") and SIZES (default 1.5b) set the throughput configurations.
set -o pipefail
OUT=${OUT:-.device_out}
mkdir -p "$OUT"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_fused_mix_gpu.py tests/test_fused_mix.py 2>&1 \
    | tee "$OUT/fused_mix_tests.log"
fi
python3 bench/token_mix.py --out "$OUT/token_mix.json" 2>&1 | tee "$OUT/token_mix.log"
python3 bench/train_throughput.py --compile --models rwkv --fused-mix off on --sizes ${SIZES:-1.5b} \
  --ctx ${CTX:-2048 16384} --out "$OUT/train_throughput_fused_mix.json" 2>&1 | tee "$OUT/train_throughput.log"

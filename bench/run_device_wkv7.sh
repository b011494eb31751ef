#!/usr/bin/env bash
# WKV-7 on the device machine: GPU tests, then the benchmark. Logs go to $OUT (or ./.device_out).
#   run(command="bash bench/run_device_wkv7.sh", carry=[".whl/wkv7"])
# Needs the fla wheel in .whl/wkv7 (python3 -m pip download --no-deps fla-core==0.6.0 -d .whl/wkv7) for fla's timings.
set -o pipefail
OUT=${OUT:-.device_out}
mkdir -p "$OUT"
if ls .whl/wkv7/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/wkv7/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  # the GPU tests, and the CPU kernel tests, which run on CUDA when there is one (fp16 fallbacks, decode, seqpar)
  python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_wkv7_gpu.py tests/test_wkv7_triton.py tests/test_wkv7_seqpar.py 2>&1 \
    | tee "$OUT/gpu_tests.log"
fi
python3 bench/wkv7.py ${BENCH_ARGS:-} --out "$OUT/wkv7.json" 2>&1 | tee "$OUT/bench.log"
if [ "${PROFILE:-0}" = 1 ]; then
  ncu --kernel-name regex:wkv7 --launch-count 3 --section SpeedOfLight --section Occupancy --section LaunchStats \
    --section WarpStateStats --section SchedulerStats python3 bench/wkv7.py --profile ${PROFILE_ARGS:-} > "$OUT/ncu.txt" 2>&1
  grep -E "wkv7|Duration|Registers|Achieved Occupancy|Theoretical Occupancy|Stall|Warp Cycles Per Issued|Issued Warp|Memory Throughput|Compute \(SM\)|No Eligible|Block Limit" "$OUT/ncu.txt" | head -80
fi

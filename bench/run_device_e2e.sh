#!/usr/bin/env bash
# End-to-end GPU checks and benches (issue 7) in ONE device call, about 7-8 minutes, logs and JSON in $OUT:
#   run(command="bash bench/run_device_e2e.sh", timeout_s=600)          # no carry: nothing to install
# No wheels are carried: the benches need torch, triton and timm (all installed on the device image); the
# SigLIP2-B/16-384 tower is built with timm directly (bench/common.py), so open_clip/whisper/pyrwkv are not imported.
# (Were a wheel ever needed: carry .whl and put first
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
#   && export PYTHONPATH=/tmp/site:$PWD/src )
#
# Stages, in order of importance; each has a time cap and is skipped when the total budget (BUDGET, default 520 s)
# would be exceeded, so the call always returns inside the device's 10-minute limit:
#   1. checks         bench/check_e2e.py: RWKV-7 GPU fp32/bf16 vs CPU fp32, gradients, recurrent == parallel,
#                     CUDA graph == eager; Transformer baseline likewise                          (~30 s)
#   2. decode         bench/decode.py, 1.5B, ctx 1k..64k, CUDA-graph decode (FusedDecoder; the plain
#                     RWKV7.step graph at 1k and 64k for before/after), both models                (~70 s)
#   3. train          bench/train_throughput.py, 0.4B + 1.5B, ctx 2048/8192/16384, both models    (~100 s)
#   4. modality       bench/modality_tokens.py (Figure 2), 1.5B, 576/287/191/143 tokens            (~30 s)
#   5. decode_compile decode with the torch.compile'd fused step, then CUDA graph; checks the compiled step
#                     against eager RWKV7.step on the 1.5B model first (PASS/FAIL line)            (~70 s)
#   6. train_compile  1.5B training with torch.compile'd blocks, ctx 2048 and 16384; the first compiled step's
#                     loss is checked against an eager forward (PASS/FAIL line)                    (~150 s)
#   7. checks_compile compiled blocks vs eager on the small check models, if time is left          (~60 s)
#   8. gputests       tests/gpu/test_compile_gpu.py: Inductor-compiled RWKV-7 blocks == eager, values and
#                     gradients, 1.5B width at 16K packed tokens (bf16) and 0.1B (fp32)               (~90 s)
# Variables: BUDGET (s), SKIP="name name" (stages to skip), TRAIN_ARGS / DECODE_ARGS (extra flags).
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-.device_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache  # shared by the stages: a graph compiled once is reused
BUDGET=${BUDGET:-520}
LOG="$OUT/e2e.log"
STATUS=()

stage() {  # stage NAME CAP_SECONDS command...
  local name=$1 cap=$2
  shift 2
  if [[ " ${SKIP:-} " == *" $name "* ]]; then STATUS+=("$name:skipped"); return; fi
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 25 ]; then
    echo "== $name: SKIPPED (budget spent: ${SECONDS}s of ${BUDGET}s)" | tee -a "$LOG"
    STATUS+=("$name:no-time")
    return
  fi
  local t=$((cap < left ? cap : left))
  echo "== $name (cap ${t}s, at ${SECONDS}s)" | tee -a "$LOG"
  timeout -k 10 "$t" "$@" 2>&1 | tee -a "$LOG"
  local rc=$?
  echo "== $name rc=$rc (done at ${SECONDS}s)" | tee -a "$LOG"
  STATUS+=("$name:rc=$rc")
}

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  python3 -c "import torch, triton, timm; print('torch', torch.__version__, 'triton', triton.__version__, 'timm', timm.__version__)"
} 2>&1 | tee -a "$LOG"

SM=${SMOKE:+--smoke}  # SMOKE=1: every stage in its CPU smoke size (checks the script here, no GPU)
stage checks 150 python3 bench/check_e2e.py $SM --out "$OUT/checks.json"
stage decode 120 python3 bench/decode.py $SM --eager-too --compare-plain --out "$OUT/decode.json" ${DECODE_ARGS:-}
stage train 170 python3 bench/train_throughput.py $SM --out "$OUT/train_throughput.json" ${TRAIN_ARGS:-}
stage modality 70 python3 bench/modality_tokens.py $SM --out "$OUT/modality_tokens.json"
stage decode_compile 100 python3 bench/decode.py $SM --compile --ctx 1024 8192 65536 \
  --out "$OUT/decode_compile.json" ${DECODE_ARGS:-}
stage train_compile ${COMPILE_CAP:-170} python3 bench/train_throughput.py $SM --compile --sizes 1.5b --ctx 2048 16384 \
  --out "$OUT/train_throughput_compile.json" ${TRAIN_ARGS:-}
stage checks_compile 80 python3 bench/check_e2e.py $SM --compile --out /tmp/checks_compile.json
stage gputests 150 python3 -m pytest -q -s -m gpu -p no:cacheprovider tests/gpu/test_compile_gpu.py

# the reply shows only the end of the output: repeat every table and check verdict last
python3 bench/e2e_summary.py "$OUT" 2>&1 | tee "$OUT/summary.txt"
echo "== check lines: $(grep -c '^PASS' "$LOG") PASS, $(grep -c '^FAIL' "$LOG") FAIL"
grep -h -E "^FAIL" "$LOG"
echo "== stages: ${STATUS[*]} (total ${SECONDS}s)" | tee -a "$LOG"

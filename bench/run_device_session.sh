#!/usr/bin/env bash
# One device call for the generation and training-kernel changes: the public-API generation bench (triton step, the
# torch step beside it), every GPU test, then training throughput without and with backbone fused_mix.
#   run(command="bash bench/run_device_session.sh", carry=[".whl"])
# Variables: GEN_CAP, TEST_CAP, TRAIN_CAP (seconds; TRAIN_CAP=0 skips the throughput part), GEN_ARGS, CTX.
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-.device_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PWD/bench PYTHONUNBUFFERED=1
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } 2>&1 | tee "$OUT/env.txt"
timeout -k 5 "${GEN_CAP:-210}" python3 bench/generate_api.py ${GEN_ARGS:---ctx 1024 16384 --b16-ctx 0 --new 65 --reps 3 --compare-step torch} \
  --out "$OUT/generate_api.json" 2>&1 | grep -v -i warn | tee "$OUT/generate_api.log"
timeout -k 5 "${TEST_CAP:-200}" python3 -m pytest -q -p no:cacheprovider tests/gpu tests/test_fused_mix.py 2>&1 | tail -30 | tee "$OUT/gpu_tests.log"
[ "${TRAIN_CAP:-150}" = 0 ] && exit 0
timeout -k 5 "${TRAIN_CAP:-150}" python3 bench/train_throughput.py --compile --models rwkv --fused-mix off on \
  --sizes 1.5b --ctx ${CTX:-2048} --warmup 2 --iters 3 --out "$OUT/train_throughput_fused_mix.json" 2>&1 | tail -20 | tee "$OUT/train.log"

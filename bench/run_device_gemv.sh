#!/usr/bin/env bash
# One device call: every GPU test of main, the batch-1 GEMV sweep against cuBLAS, then the public-API generation
# bench with the 64k row, the batch-16 x 16k row and the transformers peer.
#   run(command="bash bench/run_device_gemv.sh")
# Last, if TRAIN_CAP > 0: training throughput of the 1.5B model (default: eager, backbone fused_mix off and on;
# TRAIN_ARGS replaces the variant flags, e.g. TRAIN_ARGS="--compile --fused-mix on --recompute off on").
# Variables: TEST_CAP, GEMV_CAP, GEN_CAP, TRAIN_CAP (seconds; 0 skips that part), GEMV_ARGS (e.g. --quick), GEN_ARGS,
# TRAIN_ARGS.
source "$(dirname "$0")/device_prelude.sh"
# output straight to files: a pipeline killed by timeout loses what it buffered
if [ "${TEST_CAP:-200}" != 0 ]; then
  # the tests that have never run on a GPU first, one line each as it finishes
  timeout -k 5 "${TEST_CAP:-200}" python3 -m pytest -v --tb=short -p no:cacheprovider -rfE \
    tests/gpu/test_generate_gpu.py tests/gpu/test_prefill_graphs_gpu.py tests/gpu/test_encoder_graphs_gpu.py \
    tests/gpu/test_fused_mix_gpu.py tests/test_fused_mix.py tests/gpu/test_wkv7_gpu.py tests/gpu/test_compile_gpu.py \
    > "$OUT/gpu_tests.log" 2>&1; echo "gpu tests rc $?" >> "$OUT/gpu_tests.log"
  grep -c PASSED "$OUT/gpu_tests.log"; grep -E "FAILED|ERROR" "$OUT/gpu_tests.log" | head -20
  tail -4 "$OUT/gpu_tests.log"
fi
if [ "${GEMV_CAP:-130}" != 0 ]; then
  timeout -k 5 "${GEMV_CAP:-130}" python3 bench/gemv.py ${GEMV_ARGS:-} --out "$OUT/gemv.json" > "$OUT/gemv.log" 2>&1
  grep -v "^rkv\|^out\|^key\|^value\|^head" "$OUT/gemv.log" | tail -5; grep "floor" "$OUT/gemv.log"
fi
if [ "${GEN_CAP:-230}" != 0 ]; then
  timeout -k 5 "${GEN_CAP:-230}" python3 bench/generate_api.py \
    ${GEN_ARGS:---ctx 1024 65536 --b16-ctx 16384 --new 65 --reps 2 --batch 64 --compare-gemv 4 --peer} \
    --out "$OUT/generate_api.json" > "$OUT/generate_api.log" 2>&1
  grep -v -i warn "$OUT/generate_api.log" | tail -30
fi
if [ "${TRAIN_CAP:-0}" != 0 ]; then
  # TRAIN_ARGS last: its flags override these (argparse keeps the last value)
  timeout -k 5 "${TRAIN_CAP}" python3 bench/train_throughput.py --models rwkv --sizes 1.5b --ctx 2048 --tokens 8192 \
    --ckpt none --warmup 2 --iters 4 --out "$OUT/train.json" ${TRAIN_ARGS:---fused-mix off on} > "$OUT/train.log" 2>&1
  grep -v -i warn "$OUT/train.log" | tail -8
fi

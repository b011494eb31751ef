#!/usr/bin/env bash
# One short device call for time to first token: the GPU tests of the graph caches and of generation, then the
# public-API generation bench at one context with the TTFT rows (stages, host split, encoder-eager and two-piece
# peers), ending with the same TTFT measurement over torch.compile'd blocks.
#   run(command="bash bench/run_device_ttft.sh")
# Variables: TEST_CAP, GEN_CAP (seconds; 0 skips that part), GEN_ARGS.
source "$(dirname "$0")/device_prelude.sh"
# output straight to files: a pipeline killed by timeout loses what it buffered
if [ "${TEST_CAP:-150}" != 0 ]; then
  timeout -k 5 "${TEST_CAP:-150}" python3 -m pytest -q -p no:cacheprovider -rfE tests/gpu/test_encoder_graphs_gpu.py \
    tests/gpu/test_prefill_graphs_gpu.py tests/gpu/test_generate_gpu.py > "$OUT/gpu_tests.log" 2>&1
  echo "gpu tests rc $?" >> "$OUT/gpu_tests.log"
  tail -25 "$OUT/gpu_tests.log"
fi
if [ "${GEN_CAP:-240}" != 0 ]; then
  timeout -k 5 "${GEN_CAP:-240}" python3 bench/generate_api.py \
    ${GEN_ARGS:---ctx 1024 --b16-ctx 0 --batch 8 --new 33 --reps 2 --ttft-compile} \
    --out "$OUT/generate_api.json" > "$OUT/generate_api.log" 2>&1
  echo "generate_api rc $?" >> "$OUT/generate_api.log"
  grep -v -i warn "$OUT/generate_api.log" | tail -40
fi

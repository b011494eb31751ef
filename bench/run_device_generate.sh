#!/usr/bin/env bash
# Generation on the GPU in ONE device call: the GPU tests of the fast decoder, then the public-API bench.
#   run(command="bash bench/run_device_generate.sh", timeout_s=600)    # nothing to carry: torch, triton, timm and
#                                                                      # transformers are on the device image
# The bench runs with empty Triton/Inductor caches, so its first generate call is a fresh machine's first call.
# Variables: GEN_ARGS (extra bench flags, e.g. "--peer"), TEST_CAP / BENCH_CAP (seconds), SKIP_TESTS=1.
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-.device_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, triton, timm, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'timm', timm.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$OUT/env.txt"
if [ -z "${SKIP_TESTS:-}" ]; then
  timeout -k 5 "${TEST_CAP:-150}" python3 -m pytest -q -m gpu -p no:cacheprovider tests/gpu/test_generate_gpu.py 2>&1 \
    | tee "$OUT/gpu_tests.log"
fi
export TRITON_CACHE_DIR=/tmp/triton_fresh_$$ TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_fresh_$$
timeout -k 5 "${BENCH_CAP:-330}" python3 bench/generate_api.py ${GEN_ARGS:-} 2>&1 | tee "$OUT/generate_api.log"
echo "bench rc=$?"

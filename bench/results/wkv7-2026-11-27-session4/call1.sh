set -o pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
date -u
timeout 210 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_wkv7_gpu.py tests/test_wkv7_triton.py 2>&1 | tail -8 | tee $OUT/gpu_tests.log
date -u
timeout 150 python3 bench/wkv7.py --sweep --no-fla 2>&1 | grep -v -i warn | tee $OUT/sweep.log
date -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/wkv7/*.whl
export TRITON_CACHE_DIR=/tmp/tcache TRITON_CACHE_AUTOTUNING=1
left=$((575 - SECONDS)); echo "fla bench with ${left}s"
PYTHONPATH=$PWD/src:/tmp/site timeout $left python3 bench/wkv7.py --out $OUT/wkv7_fla.json 2>&1 | grep -v -i warn | tee $OUT/bench_fla.log
date -u
tar czf $OUT/tcache.tgz -C /tmp tcache 2>/dev/null; ls -la $OUT

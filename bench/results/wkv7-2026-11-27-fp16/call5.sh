set -o pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
date -u
timeout 130 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_wkv7_gpu.py tests/test_wkv7_triton.py 2>&1 | tail -4 | tee $OUT/gpu_tests.log
timeout 90 python3 bench/wkv7.py --no-fla --out $OUT/wkv7.json 2>&1 | grep -v -i warn | tee $OUT/bench.log
date -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/wkv7/*.whl
PYTHONPATH=$PWD/src:/tmp/site timeout 170 python3 bench/wkv7.py --quick --out $OUT/wkv7_fla.json 2>&1 | grep -v -i warn | tee $OUT/bench_fla.log
date -u

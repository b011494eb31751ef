set -o pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
date -u
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_wkv7_gpu.py tests/test_wkv7_triton.py 2>&1 | tail -6 | tee $OUT/gpu_tests.log
python3 - <<'PY' 2>&1 | tee -a $OUT/gpu_tests.log
import sys; sys.path.insert(0, "bench")
import wkv7
wkv7.SWEEP[:] = [{"DOT": "tf32", "DOT_STATE": "tf32", "WARPS_GRAD": 8}, {}]
wkv7.FLA = None
wkv7.sweep(print, wkv7.SWEEP)
PY
timeout 100 python3 bench/wkv7.py --no-fla --out $OUT/wkv7.json 2>&1 | grep -v -i warn | tee $OUT/bench.log
date -u
export PYTHONPATH=$PWD/src:$PWD/bench TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
timeout 260 python3 bench/train_throughput.py --compile --sizes 1.5b --ctx 2048 16384 --out $OUT/train_compile.json 2>&1 | grep -v -i warn | tail -25 | tee $OUT/train_compile.log
date -u

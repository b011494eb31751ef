set -o pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
date -u
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_wkv7_gpu.py tests/test_wkv7_triton.py 2>&1 | tail -15 | tee $OUT/gpu_tests.log
timeout 200 python3 bench/wkv7.py --sweep --no-fla 2>&1 | grep -v -i warn | tee $OUT/sweep.log
timeout 150 python3 bench/wkv7.py --seqpar --no-fla --out $OUT/seqpar.json 2>&1 | grep -v -i warn | tee $OUT/seqpar.log
timeout 120 python3 bench/wkv7.py --no-fla --out $OUT/wkv7.json 2>&1 | grep -v -i warn | tee $OUT/bench.log
date -u

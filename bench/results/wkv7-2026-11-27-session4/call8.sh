set -o pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
date -u
timeout 150 python3 bench/wkv7.py --sweep --no-fla 2>&1 | grep -v -i warn | tee $OUT/sweep.log
date -u
timeout 230 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_wkv7_gpu.py tests/test_wkv7_triton.py tests/test_wkv7_seqpar.py 2>&1 | tail -8 | tee $OUT/gpu_tests.log
date -u

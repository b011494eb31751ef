set -o pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
date -u
timeout 150 python3 bench/wkv7.py --sweep --no-fla 2>&1 | grep -v -i warn | tee $OUT/sweep.log
date -u
cp src/modrwkv/kernels/triton_chunk.py /tmp/tc_new.py
cp .ab/tc_head.py src/modrwkv/kernels/triton_chunk.py
echo "previous commit's gradient kernel (phases in the old order), same machine:" | tee $OUT/sweep_head.log
timeout 60 python3 - <<'PY' 2>&1 | grep -v -i warn | tee -a $OUT/sweep_head.log
import sys; sys.path.insert(0, "bench")
import wkv7
wkv7.FLA = None
wkv7.sweep(print, [{}])
PY
cp /tmp/tc_new.py src/modrwkv/kernels/triton_chunk.py
date -u
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_wkv7_gpu.py tests/test_wkv7_triton.py 2>&1 | tail -8 | tee $OUT/gpu_tests.log
date -u

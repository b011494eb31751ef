set -o pipefail
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/wkv7/*.whl
export TRITON_CACHE_DIR=/tmp/tcache TRITON_CACHE_AUTOTUNING=1
date -u
PYTHONPATH=$PWD/src:/tmp/site timeout $((590 - SECONDS)) python3 bench/wkv7.py --out $OUT/wkv7_fla.json 2>&1 | grep -v -i warn | tee $OUT/bench_fla.log
date -u

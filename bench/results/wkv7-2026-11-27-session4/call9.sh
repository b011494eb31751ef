set -o pipefail
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/wkv7/*.whl
date -u
PYTHONPATH=$PWD/src:/tmp/site timeout $((560 - SECONDS)) python3 bench/wkv7.py --out $OUT/wkv7_fla.json 2>&1 | grep -v -i warn | tee $OUT/bench_fla.log
date -u
PYTHONPATH=$PWD/src timeout $((595 - SECONDS)) python3 -m pytest -q -p no:cacheprovider tests/test_wkv7_seqpar.py 2>&1 | tail -3 | tee $OUT/seqpar_tests.log
date -u

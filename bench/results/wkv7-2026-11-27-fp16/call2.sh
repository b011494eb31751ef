set -o pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 200 python3 bench/wkv7.py --seqpar --no-fla --out $OUT/seqpar.json 2>&1 | tee $OUT/seqpar.log
timeout 150 python3 bench/wkv7.py --sweep --no-fla 2>&1 | tee $OUT/sweep.log
timeout 150 python3 bench/wkv7.py --decode-sweep 2>&1 | grep -v Warn | tee $OUT/decode_sweep.log

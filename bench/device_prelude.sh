# Sourced by the bench/run_device_*.sh scripts: the repository root as working directory, $OUT (the device's
# result folder, else ./.device_out), PYTHONPATH for src/ and bench/, and the card and versions in $OUT/env.txt.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
OUT=${OUT:-.device_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PWD/bench PYTHONUNBUFFERED=1
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

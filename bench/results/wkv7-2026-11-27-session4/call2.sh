set -o pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
date -u
timeout 190 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_wkv7_gpu.py tests/test_wkv7_triton.py 2>&1 | tail -8 | tee $OUT/gpu_tests.log
date -u
timeout 130 python3 bench/wkv7.py --sweep --no-fla 2>&1 | grep -v -i warn | tee $OUT/sweep.log
date -u
timeout 120 python3 bench/wkv7.py --no-fla --out $OUT/wkv7.json 2>&1 | grep -v -i warn | tee $OUT/bench.log
date -u
left=$((585 - SECONDS)); echo "ncu with ${left}s"
timeout $left ncu --clock-control none --kernel-name regex:wkv7 --launch-count 6 --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis python3 bench/wkv7.py --profile > $OUT/ncu.txt 2>&1
grep -E "_wkv7|Duration|Registers Per|Achieved Occupancy|Theoretical Occupancy|Warp Cycles Per Issued|Issued Warp|Memory Throughput|DRAM Throughput|Compute \(SM\)|No Eligible|Block Limit Reg|L1/TEX Hit|Shared Memory" $OUT/ncu.txt | head -90
date -u

set -o pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
date -u
timeout 200 ncu --clock-control none --kernel-name regex:wkv7 --launch-count 6 --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis python3 bench/wkv7.py --profile > $OUT/ncu.txt 2>&1
grep -E "_wkv7|Duration|Registers Per|Achieved Occupancy|Theoretical Occupancy|Warp Cycles Per Issued|Issued Warp|Memory Throughput|DRAM Throughput|Compute \(SM\)|No Eligible|Block Limit Reg|L1/TEX Hit|Local" $OUT/ncu.txt | head -120
date -u

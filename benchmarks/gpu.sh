#!/usr/bin/env bash
# The GPU check of issue 19, for a machine with CUDA, torch and Triton already there: installs nothing,
# runs the CUDA tests, then the benchmark grid (benchmarks/gpu.py), in well under 8 minutes on an H200.
#   bash benchmarks/gpu.sh [RESULTS_DIR]      (default: $OUT, else benchmarks/results/gpu)
# Writes RESULTS_DIR/env.txt, tests.log, gpu_bench.md (+ .json), bench.log.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-benchmarks/results/gpu}}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 RNNKIT_NO_EXTENSION=1
py=${PYTHON:-python3}
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
  $py -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } >"$out/env.txt" 2>&1
$py -m rnnkit --help >/dev/null && echo "rnnkit CLI imports" >>"$out/env.txt"
cat "$out/env.txt"
workers=$($py -c "import xdist" 2>/dev/null && echo "-n 8" || echo "")
timeout ${TEST_TIMEOUT:-200} $py -m pytest -q --maxfail=${MAXFAIL:-10} -p no:cacheprovider $workers tests/test_gpu_kernels.py \
    tests/test_devices.py ${EXTRA_TESTS:-} 2>&1 | tee "$out/tests.log" | tail -25
timeout ${BENCH_TIMEOUT:-300} $py benchmarks/gpu.py --out "$out/gpu_bench.md" ${BENCH_ARGS:-} 2>&1 \
    | tee "$out/bench.log" | tail -60

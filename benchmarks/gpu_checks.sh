#!/usr/bin/env bash
# CUDA tests, B1 on a GPU (batch 200 to 8192, float32 and TF32) and the scale rows of the harmonic
# chains, in one run of a few minutes on a machine with torch (CUDA), numpy, pyyaml and tqdm;
# OpenMM and MDTraj are not needed. Prepare the B1 features where MDTraj is installed:
#
#     python benchmarks/bench_training.py --steps 30 --save-features benchmarks/data/alanine-heavy.npz
#
# then, from the repository root on the GPU machine (results in $OUT, default gpu-results/):
#
#     bash benchmarks/gpu_checks.sh
set -u
OUT=${OUT:-gpu-results}
FEATURES=${FEATURES:-benchmarks/data/alanine-heavy.npz}
STEPS=${STEPS:-300}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$OUT/machine.txt" 2>&1
python -c "import numpy, yaml, tqdm" || { echo "missing numpy, pyyaml or tqdm" | tee -a "$OUT/machine.txt"; exit 2; }

timeout 240 python -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_device.py tests/test_flows.py > "$OUT/tests.txt" 2>&1
echo "tests: exit $?" >> "$OUT/tests.txt"

for precision in highest high; do
    timeout 240 python benchmarks/bench_training.py --features "$FEATURES" --device cuda --threads 4 --steps "$STEPS" \
        --batch-sizes 200,1024,8192 --matmul-precision "$precision" --output "$OUT/b1-cuda-$precision.json" > "$OUT/b1-cuda-$precision.log" 2>&1
done

timeout 120 python benchmarks/bench_scale.py --chains-only --device cuda --threads 4 --steps 50 --output "$OUT/scale-cuda.json" > "$OUT/scale-cuda.log" 2>&1
tail -n 3 "$OUT"/*.log "$OUT/tests.txt"

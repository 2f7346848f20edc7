#!/usr/bin/env bash
# GPU checks in one go: the CUDA tests, data-parallel training over nccl, B1 on the GPU (batch
# sizes 200 to 8192, float32 and TF32) beside B1 on the CPU of that machine, and the scale rows of
# the harmonic chains.
#
#     bash benchmarks/gpu_checks.sh OUTDIR [STEPS_PER_ROW]
#
# Needs torch with CUDA, numpy, pyyaml and tqdm. B1 trains from internal coordinates prepared
# where MDTraj is installed (OpenMM and MDTraj are then not needed on the GPU machine):
#
#     python benchmarks/bench_training.py --steps 30 --save-features benchmarks/data/alanine-heavy.npz
#
# Each B1 run writes a JSON list of rows into OUTDIR; the last lines printed are a table of
# samples/s and peak memory.
set -u
out=${1:?usage: gpu_checks.sh OUTDIR [STEPS_PER_ROW]}
steps=${2:-300}
features=${FEATURES:-benchmarks/data/alanine-heavy.npz}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"

echo "== CUDA tests"
timeout 300 python3 -m pytest -q -n 0 -p no:cacheprovider tests/training/test_gpu.py 2>&1 | tee "$out/tests.txt"

echo "== data-parallel training over nccl (one process per GPU)"
timeout 300 python3 -m torch.distributed.run --standalone --nproc_per_node "$(nvidia-smi -L | wc -l)" -m neuralct train --distributed \
    --toy harmonic-chain -p n=16 --steps 200 --device cuda --no-progress --output "$out/ddp" 2>&1 | tail -n 3 | tee "$out/ddp.txt"

echo "== B1 on the GPU and on this machine's CPU"
bench() {  # name, then bench_training.py options
    local name=$1; shift
    timeout 300 python3 benchmarks/bench_training.py --features "$features" --steps "$steps" "$@" --output "$out/b1-$name.json" \
        > "$out/b1-$name.log" 2>&1 || echo "b1-$name failed: $(tail -n 1 "$out/b1-$name.log")"
}
bench cuda-fp32 --device cuda --batch-sizes 200,1024,8192 --matmul-precision highest
bench cuda-tf32 --device cuda --batch-sizes 200,1024,8192 --matmul-precision high
bench cpu-1thread --device cpu --threads 1 --batch-sizes 200
bench "cpu-$(nproc)threads" --device cpu --threads "$(nproc)" --batch-sizes 200

echo "== scale rows of the harmonic chains on the GPU"
timeout 300 python3 benchmarks/bench_scale.py --chains-only --device cuda --steps 50 --output "$out/scale-cuda.json" \
    > "$out/scale-cuda.log" 2>&1 || echo "scale failed: $(tail -n 1 "$out/scale-cuda.log")"

python3 - "$out" <<'EOF'
import json, pathlib, sys
print(f"{'run':18s} {'batch':>6s} {'samples/s':>10s} {'peak MB':>8s} {'val NLL':>8s}")
for path in sorted(pathlib.Path(sys.argv[1]).glob("b1-*.json")):
    for r in json.loads(path.read_text()):
        print(f"{path.stem[3:]:18s} {r['batch_size']:6d} {r['samples_per_second']:10.0f} {r['peak_memory_mb']:8.0f} "
              f"{r['validation_nll_kept_model']:8.2f}")
EOF

#!/usr/bin/env bash
# GPU checks in one go: the CUDA tests, data-parallel training over nccl, and B1 on the GPU
# (batch sizes 200 to 8192, float32 and TF32) beside the same run on the CPU of that machine.
#
#     bash benchmarks/gpu_checks.sh OUTDIR [MINUTES_PER_RUN]
#
# Needs torch with CUDA, mdtraj and deeptime (for B1's trajectories and its mutual information),
# and B1's trajectories in benchmarks/data/ (made by `python benchmarks/bench_training.py` on any
# machine with OpenMM). Each B1 run prints one JSON object into OUTDIR; the last lines printed are
# a table of samples/s and peak memory.
set -u
out=${1:?usage: gpu_checks.sh OUTDIR [MINUTES_PER_RUN]}
minutes=${2:-0.25}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"

echo "== CUDA tests"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/tests.txt"

echo "== data-parallel training over nccl (one process per GPU)"
python3 -m torch.distributed.run --standalone --nproc_per_node "$(nvidia-smi -L | wc -l)" -m neuralct train --distributed --toy harmonic-chain \
    -p n=16 --steps 200 --device cuda --no-progress --output "$out/ddp" 2>&1 | tail -n 3 | tee "$out/ddp.txt"

echo "== B1 on the GPU and on this machine's CPU"
bench() {  # name, then bench_training.py options
    local name=$1; shift
    timeout 300 python3 benchmarks/bench_training.py --minutes "$minutes" "$@" --output "$out/b1-$name.json" > "$out/b1-$name.log" 2>&1 \
        || echo "b1-$name failed: $(tail -n 1 "$out/b1-$name.log")"
}
for batch in 200 1024 8192; do
    bench "cuda-fp32-$batch" --device cuda --batch-size "$batch"
    TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 bench "cuda-tf32-$batch" --device cuda --batch-size "$batch"
done
bench cpu-1thread-200 --device cpu --threads 1 --batch-size 200
bench "cpu-$(nproc)threads-200" --device cpu --threads "$(nproc)" --batch-size 200

python3 - "$out" <<'EOF'
import json, pathlib, sys
rows = sorted(pathlib.Path(sys.argv[1]).glob("b1-*.json"))
print(f"{'run':26s} {'samples/s':>10s} {'peak MB':>8s} {'val NLL':>8s} {'MI psi':>7s}")
for path in rows:
    r = json.loads(path.read_text())
    print(f"{path.stem[3:]:26s} {r['samples_per_second']:10.0f} {r['peak_memory_mb']:8.0f} "
          f"{r['validation_nll_kept_model']:8.2f} {r['mi_psi_nats_best_of_two']:7.2f}")
EOF

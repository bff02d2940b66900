#!/usr/bin/env bash
# The fused launcher's GPU benchmark as one script (docs/performance.md, "On a GPU").
#   bash benchmarks/gpu.sh prepare  # here: the wheels the GPU machine lacks into .whl/ and
#                                   # Fashion-MNIST into .gpu-data/ (both ignored by git)
#   bash benchmarks/gpu.sh run      # there (the device tool, carry [".whl", ".gpu-data"]):
#                                   # every figure and log in $OUT/gpu.tgz, in under 560 s
# On the GPU: a fused step's operators, host time and device time per step, eager and
# replayed from a CUDA graph (benchmarks/fused_step.py --device cuda); the README sweep fused;
# the 32-member MLP sweep fused and side by side with 8 jobs per GPU (benchmarks/sweep.py).
set -uo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  prepare)
    grep -qx '/.whl/' .git/info/exclude || printf '/.whl/\n/.gpu-data/\n' >> .git/info/exclude
    pinned=$(python3 -c 'import importlib.metadata as m
print(" ".join(f"{name}=={m.version(name)}" for name in ("hydra-core", "omegaconf",
                                                         "google-crc32c")))')
    rm -rf .whl && python3 -m pip download -q --no-deps --only-binary=:all: \
      --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_17_x86_64 -d .whl $pinned
    python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
    mkdir -p .gpu-data
    cp /usr/share/datasets/fashion-mnist/*.gz .gpu-data/ 2>/dev/null \
      || cp data/FashionMNIST/raw/*.gz .gpu-data/
    ls .whl .gpu-data
    ;;
  run)
    logs=$(mktemp -d)
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD/src:$PWD PYTHONUNBUFFERED=1
    mkdir -p /usr/share/datasets/fashion-mnist
    cp .gpu-data/*.gz /usr/share/datasets/fashion-mnist/
    python3 -m dlfoundations.data.fetch --no-download > "$logs/fetch.log" 2>&1
    nvidia-smi > "$logs/nvidia-smi.txt" 2>&1
    timeout 120 python3 benchmarks/fused_step.py --device cuda --steps 100 \
      --out "$logs/fused_step.json" > "$logs/fused_step.log" 2>&1
    timeout 150 python3 benchmarks/sweep.py --modes fused \
      --out "$logs/sweep.json" > "$logs/sweep.log" 2>&1
    timeout 280 python3 benchmarks/sweep.py --mlp32 --modes fused --jobs-per-gpu 8 \
      --out "$logs/mlp32.json" > "$logs/mlp32.log" 2>&1
    tar czf "${OUT:-.}/gpu.tgz" -C "$logs" .
    tail -n 3 "$logs"/*.log
    ;;
  *)
    echo "usage: bash benchmarks/gpu.sh prepare|run" >&2
    exit 2
    ;;
esac

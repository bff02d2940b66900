"""Benchmark: `python scripts/bench.py [--quick] [--out outputs/bench.json]`.

Median epoch time of the project's full training path, Lightning's barebones floor and a bare
PyTorch loop for softmax, mlp and lenet; the data path against torchvision's loader; and the
time from process start to the first training step.
"""

from dlfoundations.environment import hide_absent_gpus

hide_absent_gpus()

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

from dlfoundations.benchmark import run  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs each, softmax and mlp")
    parser.add_argument("--repeats", type=int, default=7, help="measured epochs per mode")
    parser.add_argument("--models", nargs="+", default=["softmax", "mlp", "lenet"])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench.json"))
    args = parser.parse_args()
    models = ["softmax", "mlp"] if args.quick else args.models
    run(models, 3 if args.quick else args.repeats, args.out)

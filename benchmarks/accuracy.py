"""Accuracy table: each model at its default config, 10 epochs, over seeds, the real test set.

    python benchmarks/accuracy.py [--epochs 10] [--seeds 0 1 2] [--out outputs/accuracy]

Each model is trained by `scripts/train.py` in its own process, once per seed; the table
(mean ± sample standard deviation over the seeds, with the torch and Lightning versions) is
printed as Markdown and written to <out>/accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (name, overrides, reported metric, target)
RUNS = [
    ("softmax", ["model=softmax"], "test/acc", ">= 0.845"),
    ("mlp", ["model=mlp"], "test/acc", ">= 0.89"),
    ("lenet (classic, adam)", ["model=lenet", "optim=adam"], "test/acc", ">= 0.88"),
    ("lenet_modern", ["model=lenet_modern"], "test/acc", ">= 0.91"),
    ("linreg", ["model=linreg"], "w_error", "< 2e-3"),
]


def versions() -> str:
    """The torch and Lightning versions the runs used."""
    import lightning
    import torch

    return f"torch {torch.__version__}, lightning {lightning.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "accuracy")
    args = parser.parse_args()
    rows = []
    print(f"{len(args.seeds)} seeds, {args.epochs} epochs; {versions()}\n")
    print("| model | metric | mean ± std | target | wall time per run |")
    print("|---|---|---|---|---|")
    for name, overrides, key, target in RUNS:
        values, times = [], []
        for seed in args.seeds:
            run_dir = args.out / f"{name.split()[0]}_seed{seed}"
            subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides, f"seed={seed}",
                 f"trainer.max_epochs={args.epochs}", f"hydra.run.dir={run_dir}"],
                check=True, capture_output=True, cwd=ROOT,
            )
            metrics = json.loads((run_dir / "metrics.json").read_text())
            values.append(metrics[key])
            times.append(metrics["wall_time_s"])
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append({"model": name, "overrides": " ".join(overrides), "metric": key,
                     "values": values, "mean": mean, "std": std, "seeds": args.seeds,
                     "target": target, "wall_time_s": times, "versions": versions()})
        print(f"| {name} | {key} | {mean:.4g} ± {std:.2g} | {target} "
              f"| {statistics.mean(times):.0f} s |", flush=True)
    (args.out / "accuracy.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

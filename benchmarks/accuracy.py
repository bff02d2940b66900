"""Accuracy table: each model at its default config, 10 epochs, seed 0, the real test set.

    python benchmarks/accuracy.py [--epochs 10] [--out outputs/accuracy]

Each model is trained by `scripts/train.py` in its own process; the table is printed as
Markdown and written to <out>/accuracy.json.
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "accuracy")
    args = parser.parse_args()
    rows = []
    for name, overrides, key, target in RUNS:
        run_dir = args.out / name.split()[0]
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides, "seed=0",
             f"trainer.max_epochs={args.epochs}", f"hydra.run.dir={run_dir}"],
            check=True, capture_output=True, cwd=ROOT,
        )
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows.append({"model": name, "overrides": " ".join(overrides), "metric": key,
                     "value": metrics[key], "target": target,
                     "b_error": metrics.get("b_error"), "wall_time_s": metrics["wall_time_s"]})
        print(f"| {name} | {key} | {metrics[key]:.4g} | {target} "
              f"| {metrics['wall_time_s']:.0f} s |",
              flush=True)
    (args.out / "accuracy.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

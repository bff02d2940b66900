"""Pruning against no pruning: the MLP search preset, same sampler seed, both searches run side
by side with one torch thread each (a 2-core machine holds both).

    python benchmarks/search.py [--trials 30] [--epochs 10] [--train-subset N]
                                [--out outputs/bench_search]

Prints, per search: the epochs trained in all, the wall time, the best val/acc and its
test/acc (the best trial's test accuracy).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
PRUNERS = ("median", "none")


def start(pruner: str, args: argparse.Namespace) -> subprocess.Popen:
    out = args.out
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", "hparams_search=mlp",
               f"hydra/sweeper/pruner={pruner}", f"hydra.sweeper.n_trials={args.trials}",
               f"trainer.max_epochs={args.epochs}", f"data.train_subset={args.train_subset}",
               "threads=1", f"paths.output_root={out / pruner}"]
    log = (out / f"{pruner}.log").open("w")
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def result(out: Path, pruner: str, seconds: float) -> dict[str, object]:
    storage = f"sqlite:///{out / pruner / 'searches' / 'mlp' / 'study.db'}"
    study = optuna.load_study(study_name="mlp", storage=storage)
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial
    return {"pruner": pruner, "trials": len(trials),
            "pruned": sum(t.state.name == "PRUNED" for t in trials),
            "epochs": sum(int(t.user_attrs.get("epochs", 0)) for t in trials),
            "wall_s": round(seconds, 1), "best val/acc": round(best.value, 4),
            "its test/acc": round(float(best.user_attrs["test/acc"]), 4),
            "best trial": best.number}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-subset", default="null",
                        help="training images per epoch (null: all 55,000)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_search")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=False)
    started = time.perf_counter()
    processes = {pruner: start(pruner, args) for pruner in PRUNERS}
    seconds = {}
    while len(seconds) < len(processes):
        for pruner, process in processes.items():
            if pruner not in seconds and process.poll() is not None:
                if process.returncode:
                    sys.exit(f"the {pruner} search failed: see {args.out / pruner}.log")
                seconds[pruner] = time.perf_counter() - started
        time.sleep(1)
    rows = [result(args.out, pruner, seconds[pruner]) for pruner in PRUNERS]
    print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(value) for value in row.values()) + " |")


if __name__ == "__main__":
    main()

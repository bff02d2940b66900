"""Evaluate a checkpoint on the test set: `python scripts/eval.py ckpt_path=<checkpoint>`."""

from dlfoundations.environment import imports_frozen, set_up_process

set_up_process()  # before torch is imported: see dlfoundations/environment.py

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from dlfoundations.app import exit_with, run_app  # noqa: E402
from dlfoundations.run.cli import run_job  # noqa: E402
from dlfoundations.run.console import write_out  # noqa: E402

with imports_frozen("dlfoundations.run.evaluate"):  # torch and Lightning
    from dlfoundations.run.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    metrics = run_job(evaluate, cfg)
    for key in sorted(k for k in metrics if k.startswith("test/")):
        write_out(f"{key} {metrics[key]:.6f}")
    for row in metrics.get("confusion_matrix", []):
        write_out(" ".join(f"{count:5d}" for count in row))
    write_out(f"written to {cfg.paths.output_dir}")


if __name__ == "__main__":
    exit_with(run_app(main))

"""Train one model: `python scripts/train.py model=softmax optim=adam` (add -m for a sweep)."""

import hydra
from omegaconf import DictConfig

from dlfoundations.cli import run_reporting_errors
from dlfoundations.train import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    metrics = run_reporting_errors(train, cfg)
    print(f"test/acc {metrics['test/acc']:.4f}  val/acc {metrics['val/acc']:.4f}  "
          f"run folder {cfg.paths.output_dir}")
    return metrics["val/acc"]


if __name__ == "__main__":
    main()

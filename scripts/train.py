"""Train one model: `python scripts/train.py model=softmax optim=adam` (add -m for a sweep)."""

import hydra
from omegaconf import DictConfig

from dlfoundations.cli import run_job
from dlfoundations.train import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    metrics = run_job(train, cfg)
    finals = [f"{key} {value:.4g}" for key, value in sorted(metrics.items())
              if key.startswith(("test/", "val/"))]
    print(f"{metrics['status']}: {'  '.join(finals)}  run folder {cfg.paths.output_dir}")
    return metrics.get(cfg.monitor.metric, float("nan"))


if __name__ == "__main__":
    main()

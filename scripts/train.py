"""Train one model: `python scripts/train.py model=softmax optim=adam` (add -m for a sweep)."""

from dlfoundations.environment import imports_frozen, set_up_process

set_up_process()  # before torch is imported: see dlfoundations/environment.py

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from dlfoundations.app import exit_with, run_app  # noqa: E402
from dlfoundations.run.cli import run_job  # noqa: E402
from dlfoundations.run.console import say_outcome  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    with imports_frozen("dlfoundations.run.train"):  # torch and Lightning: not for --help
        from dlfoundations.run.train import train
    metrics = run_job(train, cfg)
    say_outcome(metrics, cfg.paths.output_dir)
    return metrics.get(cfg.monitor.metric, float("nan"))


if __name__ == "__main__":
    exit_with(run_app(main))

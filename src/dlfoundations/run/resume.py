"""``resume=true``: a run continues in its own folder, with the command that started it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dlfoundations.errors import UserError, require
from dlfoundations.folder import read_metrics
from dlfoundations.status import FINISHED


def check_same_command(cfg: DictConfig, run_dir: Path, fused: bool = False) -> None:
    """The command must compose the config the run in ``run_dir`` was started with (``resume``
    and ``ckpt_path`` aside), and its launcher must be the one that wrote its ``last.ckpt``
    (``fused``: the fused launcher's, whose state only a fused group resumes); a different
    one is refused, naming the first key that differs. Checked before the run takes its
    folder back, so a refusal changes nothing there."""
    require(not cfg.get("ckpt_path"), "ckpt_path", cfg.get("ckpt_path"),
            "null with resume=true (the run continues from its own last.ckpt)")
    check_same_launcher(run_dir / "checkpoints" / "last.ckpt", fused)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    ignored = ("resume", "ckpt_path")
    before = {k: v for k, v in OmegaConf.to_container(OmegaConf.load(saved)).items()
              if k not in ignored}
    now = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items()
           if k not in ignored}
    if before != now:
        key = first_difference(before, now)
        raise UserError(
            f"resume=true is not allowed here: the command gives {key}="
            f"{OmegaConf.select(OmegaConf.create(now), key)!r} where the run in "
            f"{run_dir} has {OmegaConf.select(OmegaConf.create(before), key)!r}; resume it "
            "with the command that started it."
        )


def check_same_launcher(last: Path, fused: bool) -> None:
    """A fused group's ``last.ckpt`` (its ``fused`` state) is resumed by a fused sweep only,
    and a single run's by a single run only: either would lose the other's state."""
    written_fused = written_by_fused_group(last)
    if written_fused is None:
        return
    if written_fused and not fused:
        raise UserError(f"resume=true is not allowed here: {last} was written by a fused group "
                        "(hydra/launcher=fused); resume the sweep with the default launcher (no "
                        "hydra/launcher) or hydra/launcher=fused.")
    if fused and not written_fused:
        raise UserError(f"resume=true is not allowed here: {last} was not written by a fused "
                        "group; resume the sweep with the default launcher (no hydra/launcher) or "
                        "the launcher that started it.")


def written_by_fused_group(last: Path) -> bool | None:
    """Whether the ``last.ckpt`` a stopped run resumes from holds a fused group's state; None
    where there is nothing to resume (no such file, or the run finished)."""
    if not last.is_file() or (read_metrics(last.parent.parent) or {}).get("status") in FINISHED:
        return None
    from dlfoundations.run.checkpoints import read_checkpoint  # torch: only where there is one

    return "fused" in read_checkpoint(last, "resume")


def resume_point(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """With ``resume=true``: the metrics of a run that already finished in ``run_dir`` (it is
    reported, not trained again), or the checkpoint to continue from (None: start afresh).

    The command was checked to compose the run's config when the run took its folder back
    (``check_same_command``).
    """
    if not cfg.get("resume"):
        return None, cfg.get("ckpt_path")
    metrics = read_metrics(run_dir)
    if metrics and metrics.get("status") in FINISHED:
        return metrics, None
    last = run_dir / "checkpoints" / "last.ckpt"
    return None, str(last) if last.is_file() else None


def first_difference(before: Any, now: Any, prefix: str = "") -> str:
    """The dotted key of the first value that differs between two nested dicts."""
    if isinstance(before, dict) and isinstance(now, dict):
        for key in [*before, *(k for k in now if k not in before)]:
            if before.get(key) != now.get(key):
                return first_difference(before.get(key), now.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".")

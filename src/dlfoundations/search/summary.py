"""A study's summary in its sweep folder: ``summary.md`` (completed trials ranked, pruned and
failed ones with the epoch they stopped at, the best parameters as a command),
``optimization_history.png`` (each trial's value and the best so far) and
``param_importances.png`` (Optuna's own importance evaluator)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from dlfoundations.folder import write_text
from dlfoundations.reporting.tables import cell, markdown_table
from dlfoundations.search.study import RETRY_OF, counted
from dlfoundations.status import Status


def best_command(trial: FrozenTrial, prefix: list[str]) -> str:
    """The command that trains ``trial``'s configuration on its own: the search's own
    overrides (``prefix``, e.g. ``hparams_search=mlp``) and the trial's parameters."""
    return " ".join(["python scripts/train.py", *prefix,
                     *(f"{name}={value}" for name, value in trial.params.items())])


def tables(trials: list[FrozenTrial], metric: str, maximize: bool) -> list[str]:
    names = list(dict.fromkeys(name for trial in trials for name in trial.params))
    test = metric.replace("val/", "test/")
    completed = sorted((t for t in trials if t.state == TrialState.COMPLETE),
                       key=lambda t: -t.value if maximize else t.value)
    lines = ["Completed trials, best first:", ""]
    lines += markdown_table(
        ["rank", "trial", metric, test, "epochs", *names],
        [[str(rank), str(t.number), cell(t.value), cell(t.user_attrs.get(test)),
          cell(t.user_attrs.get("epochs")), *(cell(t.params.get(n)) for n in names)]
         for rank, t in enumerate(completed, 1)])
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    if pruned:
        lines += ["", "Pruned trials:", ""]
        lines += markdown_table(
            ["trial", "stopped after epoch", f"{metric} then", *names],
            [[str(t.number), cell(t.user_attrs.get("epochs")), cell(t.value),
              *(cell(t.params.get(n)) for n in names)] for t in pruned])
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed:
        lines += ["", "Failed trials:", ""]
        lines += markdown_table(
            ["trial", "status", "epochs", "reason"],
            [[str(t.number), str(t.user_attrs.get("status", Status.FAILED)),
              cell(t.user_attrs.get("epochs")), str(t.user_attrs.get("reason", ""))]
             for t in failed])
    return lines


def save_figures(study: optuna.Study, sweep_dir: Path, metric: str) -> list[str]:
    """The optimisation history and the parameter importances as PNGs; notes on what could
    not be drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, draw in (("optimization_history", optuna_plots.plot_optimization_history),
                           ("param_importances", optuna_plots.plot_param_importances)):
            try:
                axes = draw(study, target_name=metric)
            except (ValueError, RuntimeError) as err:
                notes.append(f"{name}.png not drawn: {err}")
                continue
            figure = axes.figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            figure.savefig(sweep_dir / f"{name}.png", dpi=100)
            plt.close(figure)
    return notes


def write_study_summary(study: optuna.Study, sweep_dir: Path, metric: str, n_trials: int,
                        prefix: list[str]) -> str:
    """Write ``summary.md`` and the figures into ``sweep_dir``; return the Markdown."""
    every = study.get_trials(deepcopy=False)
    trials = counted(every)
    states = [t.state for t in trials]
    done = {state: states.count(state) for state in TrialState}
    head = (f"Study {study.study_name}: {len(trials)} of {n_trials} trials; "
            f"{done[TrialState.COMPLETE]} completed, {done[TrialState.PRUNED]} pruned, "
            f"{done[TrialState.FAIL]} failed, {done[TrialState.RUNNING]} running.")
    retried = [f"{t.user_attrs[RETRY_OF]} as {t.number}" for t in every
               if RETRY_OF in t.user_attrs and t.state != TrialState.WAITING]
    lines = [head, ""]
    if retried:
        lines += [f"Re-tried (stopped before they ended): trial {', '.join(retried)}.", ""]
    if done[TrialState.COMPLETE]:
        best = study.best_trial
        lines += [f"Best: trial {best.number}, {metric} {best.value:.4g}. Train it on its own:",
                  "", f"    {best_command(best, prefix)}", ""]
    lines += tables(trials, metric, study.direction == optuna.study.StudyDirection.MAXIMIZE)
    notes = save_figures(study, sweep_dir, metric) if done[TrialState.COMPLETE] else []
    text = "\n".join([*lines, *([""] + notes if notes else [])]) + "\n"
    write_text(sweep_dir / "summary.md", text)
    return text

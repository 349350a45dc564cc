"""`run_search`: a whole search in one process, `taml search`'s loop over the `Study`.

The Kubeflow steps (steps/pipeline_steps.py) run the same calls, one per pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transfer_automl.study import SearchResult, SearchSettings, Study
from transfer_automl.tracking import Tracker


def run_search(settings: SearchSettings | Mapping[str, Any], tracker: Tracker | None = None) -> SearchResult:
    """Open the study (scratch, resume or transfer), run its pending rounds, finish it.

    With a time budget (settings.time_budget, seconds from when this run opened the study), a
    round starts only if its estimated cost (study/cost.py; for fidelity sha, its whole bracket)
    fits the time left, and an asha round runs a batch of promotions only if that fits too. A
    round that starts is run and told whole, so every trial is committed or never started; the
    first round, with nothing measured yet, always runs. Then the search finishes as usual."""
    study = Study.open(settings, tracker=tracker, lease=True)  # one runner per directory
    progress = _progress(study)
    budget = study.settings.time_budget
    deadline = study.started + budget if budget is not None else None
    stopped = ""
    try:
        for step in study.pending_rounds():
            trials = study.ask_round(step)
            if deadline is not None and not _fits(study, trials, deadline):
                stopped = _stop_reason(study, step, budget)
                break
            rows = [_run(study, trial, step, progress) for trial in trials]
            # Promotions (multi-fidelity); asha leaves those that do not fit the time left for later,
            # sha's bracket was estimated whole.
            while more := study.more_trials(step, rows, _time_left(deadline)):
                rows += [_run(study, trial, step, progress) for trial in more]
            study.tell_round(step, rows)
            progress.set_postfix_str(f"round {step}: best val {max(r.val_accuracy for r in rows):.3f}")
    except BaseException:
        study.abort()
        raise
    finally:
        progress.close()
    result = study.finish()
    result.stopped = stopped
    return result


def _run(study: Study, trial, step: int, progress):
    rung = f", rung {trial.rung}" if trial.parent_trial_id else ""
    progress.set_postfix_str(f"training {trial.task} (round {step}{rung})")
    row = study.run_trial(trial)
    if trial.parent_trial_id is None:  # the bar counts the search's trials; promotions continue them
        progress.update(1)
    return row


def _time_left(deadline: float | None) -> float | None:
    import time

    return None if deadline is None else deadline - time.perf_counter()


def _fits(study: Study, trials, deadline: float) -> bool:
    import time

    estimate = study.estimate_round(trials)
    return estimate is None or time.perf_counter() + estimate <= deadline


def _stop_reason(study: Study, step: int, budget: float) -> str:
    import time

    done = study.search.step * study.settings.batch_size
    left = max(0.0, study.started + budget - time.perf_counter())
    return (f"time budget: {budget:g} s, {left:.0f} s left; round {step} would take about "
            f"{study.estimate_round(study.ask_round(step)):.0f} s, so it did not start "
            f"({min(done, study.settings.trials)} of {study.settings.trials} trials done; --resume continues)")


def _progress(study: Study):
    from transfer_automl.console import Progress

    done = study.search.step * study.settings.batch_size
    return Progress(total=study.settings.trials, initial=min(done, study.settings.trials),
                    enabled=study.settings.progress, unit="trial", description="search")

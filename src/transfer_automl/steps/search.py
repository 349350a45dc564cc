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
    trial starts only if the time left covers its estimated cost (study/cost.py, fitted on the
    committed rounds; before the first round is committed: if any time is left); when one does not, its round is cut to the trials that
    ran (`Study.end_round_early`) and told. An asha round runs a batch of promotions only if it
    fits; a sha bracket starts only if the whole bracket's estimate fits. So every trial is committed or never started, and the run
    overshoots by at most the child running when time ran out. Then it finishes as usual."""
    study = Study.open(settings, tracker=tracker, lease=True)  # one runner per directory
    progress = _progress(study)
    budget = study.settings.time_budget
    deadline = study.started + budget if budget is not None else None
    stopped = ""
    try:
        for step in study.pending_rounds():
            trials = study.ask_round(step)
            if deadline is not None and study.settings.fidelity == "sha" and not _fits(study, trials, deadline):
                stopped = _stop_reason(study, step, budget)
                break
            rows = _run_all(study, trials, step, progress, deadline)
            # Promotions (multi-fidelity); asha leaves those that do not fit the time left for later,
            # sha's bracket was estimated whole.
            while len(rows) == len(study.ask_round(step)) and (
                    more := study.more_trials(step, rows, _time_left(deadline))):
                rows += _run_all(study, more, step, progress, deadline)
            if not rows:
                stopped = _stop_reason(study, step, budget)
                break
            if len(rows) < len(study.ask_round(step)):
                study.end_round_early(step, rows)
                stopped = _stop_reason(study, step, budget, cut=len(rows))
            study.tell_round(step, rows)
            if stopped:
                break
            progress.set_postfix_str(f"round {step}: best val {max(r.val_accuracy for r in rows):.3f}")
    except BaseException:
        study.abort()
        raise
    finally:
        progress.close()
    result = study.finish()
    result.stopped = stopped
    return result


def _run_all(study: Study, trials, step: int, progress, deadline: float | None) -> list:
    """Run `trials` in order while each one's estimate fits before the deadline."""
    import time

    rows = []
    for trial in trials:
        if deadline is not None:
            estimate = study.estimate_cost(trial) or 0.0
            if time.perf_counter() + estimate > deadline:
                break
        rows.append(_run(study, trial, step, progress))
    return rows


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


def _stop_reason(study: Study, step: int, budget: float, cut: int | None = None) -> str:
    import time

    left = max(0.0, study.started + budget - time.perf_counter())
    done = sum(1 for t in study.ask_round(step)[:cut] if t.parent_trial_id is None) if cut else 0
    done += step * study.settings.batch_size  # rounds told before (a cut round is the last)
    if cut:
        what = f"round {step} was cut to the {cut} trial(s) that fit"
    else:
        estimate = study.estimate_round(study.ask_round(step))
        what = f"round {step} would take about {estimate:.0f} s, so it did not start" if estimate is not None \
            else f"round {step} did not start"
    return (f"time budget: {budget:g} s, {left:.0f} s left; {what} ({min(done, study.settings.trials)} of "
            f"{study.settings.trials} trials done; --resume continues)")


def _progress(study: Study):
    from transfer_automl.console import Progress

    done = study.search.step * study.settings.batch_size
    return Progress(total=study.settings.trials, initial=min(done, study.settings.trials),
                    enabled=study.settings.progress, unit="trial", description="search")

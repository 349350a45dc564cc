"""`run_search`: a whole search in one process, `taml search`'s loop over the `Study`.

The Kubeflow steps (steps/pipeline_steps.py) run the same calls, one per pod.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

from transfer_automl.study import SearchResult, SearchSettings, Study
from transfer_automl.study.study import resolve_pack
from transfer_automl.tracking import Tracker
from transfer_automl.trial_status import STATUS_OK


def run_search(settings: SearchSettings | Mapping[str, Any], tracker: Tracker | None = None,
               stream: Any = None) -> SearchResult:
    """Open the study (scratch, resume or transfer), run its pending rounds, finish it. With
    settings.progress, what runs is shown on `stream` (default stderr; console.SearchProgress).

    With a time budget (settings.time_budget, seconds from when this run opened the study), a
    trial starts only if the time left covers its estimated cost (study/cost.py, fitted on the
    committed rounds; before the first round is committed: if any time is left); when one does
    not, its round is cut to the trials that ran (`Study.end_round_early`) and told. An asha round
    runs a batch of promotions only if it fits; a sha bracket starts only if the whole bracket's
    estimate fits. So every trial is committed or never started, and the run overshoots by at
    most the child (or pack) running when time ran out. Then it finishes as usual."""
    from transfer_automl.console import SearchProgress

    study = Study.open(settings, tracker=tracker, lease=True)  # one runner per directory
    done = min(study.search.step * study.settings.batch_size, study.settings.trials)
    best = {s.task: s.best_val_accuracy for s in study.summaries() if math.isfinite(s.best_val_accuracy)} \
        if done else {}  # a resumed search shows its best so far from the start
    progress = SearchProgress(study.settings.trials, done, enabled=study.settings.progress, stream=stream, best=best)
    pack = resolve_pack(study.settings.pack, study.backend.trainer)  # 1 on CPU: one child at a time
    budget = study.settings.time_budget
    deadline = study.started + budget if budget is not None else None
    stopped = ""
    try:
        for step in study.pending_rounds():
            trials = study.ask_round(step)
            if deadline is not None and study.settings.fidelity == "sha" and not _fits(study, trials, deadline):
                stopped = _stop_reason(study, step, budget)
                break
            rows = _run_round(study, trials, pack, progress, deadline)
            # Promotions (multi-fidelity); asha leaves those that do not fit the time left for later,
            # sha's bracket was estimated whole.
            while len(rows) == len(study.ask_round(step)) and (
                    more := study.more_trials(step, rows, _time_left(deadline))):
                rows += _run_round(study, more, pack, progress, deadline)
            if not rows:
                stopped = _stop_reason(study, step, budget)
                break
            if len(rows) < len(study.ask_round(step)):
                study.end_round_early(step, rows)
                stopped = _stop_reason(study, step, budget, cut=len(rows))
            study.tell_round(step, rows)
            ok = [r.val_accuracy for r in rows if r.status == STATUS_OK]
            progress.round_finished(step, len(rows), max(ok, default=float("nan")))
            if stopped:
                break
        result = study.finish(on_phase=progress.phase)
    except BaseException:
        study.abort()
        raise
    finally:
        progress.close()
    result.stopped = stopped
    return result


def _run_round(study: Study, trials: list, pack: int, progress: Any, deadline: float | None = None) -> list:
    """Rows for `trials`, in order, while each one's estimate fits before the deadline: one child at
    a time, each shown while it trains; or packs of `pack` children trained at once
    (children/packing.py), shown when their pack ends. A packed child's time is its pack's, so
    packs add nothing to the ETA's measurements. The bar counts the search's own trials; a
    promotion (multi-fidelity) continues one of them."""
    rows = []
    for start in range(0, len(trials), pack):
        chunk = trials[start : start + pack]
        if deadline is not None and time.perf_counter() + max(study.estimate_cost(t) or 0.0 for t in chunk) > deadline:
            break
        if chunk[0].parent_trial_id is None:
            progress.trial_started(chunk[0].task, chunk[0].config)
        trained_before = study.trials_run
        done = study.run_trials(chunk, pack=pack)
        measured = len(chunk) == 1 and study.trials_run > trained_before  # not replayed from its record
        for trial, row in zip(chunk, done, strict=True):
            if trial.parent_trial_id is None:
                progress.trial_finished(trial.task, json.loads(row.config), row.status, row.val_accuracy,
                                        measured=measured)
        rows += done
    return rows


def _time_left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.perf_counter()


def _fits(study: Study, trials, deadline: float) -> bool:
    estimate = study.estimate_round(trials)
    return estimate is None or time.perf_counter() + estimate <= deadline


def _stop_reason(study: Study, step: int, budget: float, cut: int | None = None) -> str:
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

"""`run_search`: a whole search in one process, `taml search`'s loop over the `Study`.

The Kubeflow steps (steps/pipeline_steps.py) run the same calls, one per pod.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from transfer_automl.study import SearchResult, SearchSettings, Study
from transfer_automl.study.study import resolve_pack
from transfer_automl.tracking import Tracker
from transfer_automl.trial_status import STATUS_OK


def run_search(settings: SearchSettings | Mapping[str, Any], tracker: Tracker | None = None,
               stream: Any = None) -> SearchResult:
    """Open the study (scratch, resume or transfer), run its pending rounds, finish it. With
    settings.progress, what runs is shown on `stream` (default stderr; console.SearchProgress)."""
    from transfer_automl.console import SearchProgress

    study = Study.open(settings, tracker=tracker, lease=True)  # one runner per directory
    done = min(study.search.step * study.settings.batch_size, study.settings.trials)
    progress = SearchProgress(study.settings.trials, done, enabled=study.settings.progress, stream=stream)
    pack = resolve_pack(study.settings.pack, study.backend.trainer)  # 1 on CPU: one child at a time
    try:
        for step in study.pending_rounds():
            rows = _run_round(study, study.ask_round(step), pack, progress)
            study.tell_round(step, rows)
            ok = [r.val_accuracy for r in rows if r.status == STATUS_OK]
            progress.round_finished(step, len(rows), max(ok, default=float("nan")))
        return study.finish(on_phase=progress.phase)
    except BaseException:
        study.abort()
        raise
    finally:
        progress.close()


def _run_round(study: Study, trials: list, pack: int, progress: Any) -> list:
    """A round's rows: one child at a time, each shown while it trains; or packs of `pack`
    children trained at once (children/packing.py), shown when their pack ends. A packed child's
    time is its pack's, so packs add nothing to the ETA's measurements."""
    rows = []
    for start in range(0, len(trials), pack):
        chunk = trials[start : start + pack]
        progress.trial_started(chunk[0].task, chunk[0].config)
        trained_before = study.trials_run
        done = study.run_trials(chunk, pack=pack)
        measured = len(chunk) == 1 and study.trials_run > trained_before  # not replayed from its record
        for trial, row in zip(chunk, done, strict=True):
            progress.trial_finished(trial.task, json.loads(row.config), row.status, row.val_accuracy,
                                    measured=measured)
        rows += done
    return rows

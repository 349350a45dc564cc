"""`run_search`: a whole search in one process, `taml search`'s loop over the `Study`.

The Kubeflow steps (steps/pipeline_steps.py) run the same calls, one per pod.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from transfer_automl.study import SearchResult, SearchSettings, Study
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
    try:
        for step in study.pending_rounds():
            rows = []
            for trial in study.ask_round(step):
                progress.trial_started(trial.task, trial.config)
                trained_before = study.trials_run
                row = study.run_trial(trial)
                rows.append(row)
                progress.trial_finished(trial.task, json.loads(row.config), row.status, row.val_accuracy,
                                        measured=study.trials_run > trained_before)
            study.tell_round(step, rows)
            ok = [r.val_accuracy for r in rows if r.status == STATUS_OK]
            progress.round_finished(step, len(rows), max(ok, default=float("nan")))
        return study.finish(on_phase=progress.phase)
    except BaseException:
        study.abort()
        raise
    finally:
        progress.close()

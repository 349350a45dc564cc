"""`run_search`: a whole search in one process, `taml search`'s loop over the `Study`.

The Kubeflow steps (steps/pipeline_steps.py) run the same calls, one per pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transfer_automl.study import SearchResult, SearchSettings, Study
from transfer_automl.tracking import Tracker


def run_search(settings: SearchSettings | Mapping[str, Any], tracker: Tracker | None = None) -> SearchResult:
    """Open the study (scratch, resume or transfer), run its pending rounds, finish it."""
    study = Study.open(settings, tracker=tracker, lease=True)  # one runner per directory
    progress = _progress(study)
    try:
        for step in study.pending_rounds():
            trials = study.ask_round(step)
            progress.set_postfix_str(f"training {len(trials)} children (round {step})")
            rows = study.run_trials(trials)  # settings.pack at once (automatic: packed on CUDA)
            progress.update(len(rows))
            study.tell_round(step, rows)
            progress.set_postfix_str(f"round {step}: best val {max(r.val_accuracy for r in rows):.3f}")
    except BaseException:
        study.abort()
        raise
    finally:
        progress.close()
    return study.finish()


def _progress(study: Study):
    from transfer_automl.console import Progress

    done = study.search.step * study.settings.batch_size
    return Progress(total=study.settings.trials, initial=min(done, study.settings.trials),
                    enabled=study.settings.progress, unit="trial", description="search")

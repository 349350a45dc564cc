"""The Study: one search engine behind `taml search`, the Kubeflow steps and the benchmarks.

    from transfer_automl.study import SearchSettings, Study
    study = Study.open(SearchSettings(tasks=("sms_spam",), trials=8, out="runs/s"))

`settings` (the one settings dataclass), `search_dir` (the directory layout), `backends` (where
children come from), `study` (ask, run, tell), `champions` (the model registry), `tracking`
(MLflow and `sync_runs`).
"""

from transfer_automl.study.search_dir import SearchDir
from transfer_automl.study.settings import SearchSettings
from transfer_automl.study.study import (
           RoundReport,
           SearchResult,
           Study,
           restore_search,
           stored_settings,
           trial_seed,
)

__all__ = ["RoundReport", "SearchDir", "SearchResult", "SearchSettings", "Study", "restore_search",
           "stored_settings", "trial_seed"]

"""The task history: every finished search's ledger summary, task fingerprints and controller
checkpoint (store.py), and the choice of earlier searches a `--transfer auto` search learns from
(select.py). A package-shipped starter history (starter/, `make starter-history`) is read after
the user's."""

from transfer_automl.history.select import Selection, select_sources
from transfer_automl.history.store import (
    Entry,
    HistoryStore,
    TaskFingerprint,
    check_history_uri,
    default_history_uri,
    starter_history,
    user_history,
)

__all__ = ["Entry", "HistoryStore", "Selection", "TaskFingerprint", "check_history_uri", "default_history_uri",
           "select_sources", "starter_history", "user_history"]

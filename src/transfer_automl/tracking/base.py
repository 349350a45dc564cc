"""The Tracker interface: where a search reports what it does.

The ledger in the artifact store is the record of trials; a tracker is a view of it for people
(MLflow, or memory in tests). Hooks do nothing by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from transfer_automl.errors import ConfigError

# The store schemes MLflow 3 accepts for tracking and the model registry (mlflow/tracking/registry.py).
MLFLOW_SCHEMES = ("", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks",
                  "databricks-uc", "uc")


def check_tracking_uri(uri: str | None, source: str = "MLFLOW_TRACKING_URI") -> None:
    """Refuse, before a search writes anything, a tracking URI that MLflow would reject mid-search."""
    if not uri:
        return
    scheme = urlparse(uri).scheme.split("+")[0]  # postgresql+psycopg2://...
    if len(scheme) == 1:  # a Windows drive letter is a path
        scheme = ""
    if scheme not in MLFLOW_SCHEMES:
        raise ConfigError(f"{source}={uri}: MLflow does not accept the scheme {scheme!r}; use a server "
                          "(http://host:5000), a database (sqlite:///mlflow.db, postgresql://...) or a path")


@dataclass(frozen=True)
class TaskData:
    """The data a task was read from, as a tracker records it (MLflow: a dataset input)."""

    task: str
    source: str  # the file read: an absolute path or a uri
    digest: str  # the hash of its content (the task's content_hash)
    rows: int


class Tracker:
    location: str = ""  # where a user browses the results (printed at the end of a search)

    def start(self, search_id: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        """Open the search (MLflow: experiment + parent controller run)."""

    def log_controller(self, step: int, metrics: dict[str, float]) -> None:
        """Stepped controller metrics: controller/*, reward/<task>/*."""

    def log_datasets(self, datasets: Sequence[TaskData]) -> None:
        """The tasks' data, once per search after `start`; each trial of a task is linked to its data."""

    def log_trial(self, row: dict[str, Any], config: dict[str, Any]) -> None:
        """One child trial (a ledger row) and its configuration; logging a trial twice is a no-op,
        so a resumed search can replay committed rounds into the tracker."""

    def log_artifact(self, path: str | Path) -> None:
        """A file of the search (checkpoint, space) to keep beside its runs."""

    def finish(self, summary: dict[str, float], status: str = "FINISHED") -> None:
        """Close the search with its final summary metrics."""

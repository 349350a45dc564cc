"""A study's tracker, and `sync_runs`: the ledger's trials that MLflow lacks, logged afterwards.

The ledger is the record of trials; MLflow is a view of it. The default tracker is MLflow at
MLFLOW_TRACKING_URI, else the search's default store (`SearchDir.default_tracking`: the sqlite
store local searches share, `<home>/mlflow.db`, recorded in the search's `tracking.json`; a search
from before keeps its own `<out>/mlflow.db`), wrapped in `ResilientTracker`: an unreachable server
costs a warning, never a trial.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from transfer_automl.errors import ConfigError, TamlError
from transfer_automl.study.search_dir import SearchDir
from transfer_automl.tracking import TaskData, Tracker


def default_tracker(directory: SearchDir | None) -> Tracker:
    """MLflow for a search with a directory (resilient); nothing for an in-memory one."""
    if directory is None:
        return Tracker()
    from transfer_automl.tracking.mlflow import MlflowTracker
    from transfer_automl.tracking.resilient import ResilientTracker

    directory.record_tracking()
    return ResilientTracker.from_env(
        MlflowTracker(directory.default_tracking_uri(), artifact_root=artifact_root(directory, None)),
        hint=f"replay the missing runs with `taml runs sync {directory}`",
    )


def task_datasets(task_objects: dict[str, object]) -> list[TaskData]:
    """The data files of a backend's tasks (text and image tasks; a table's tasks, looked up in one
    benchmark table, have none of their own)."""
    from transfer_automl.tasks.images import ImageTask
    from transfer_automl.tasks.text import TextTask

    return [TaskData(name, task.source, task.content_hash, len(task.labels)) for name, task in task_objects.items()
            if isinstance(task, TextTask | ImageTask) and task.source]


def artifact_root(directory: SearchDir, tracking_uri: str | None) -> Path | None:
    """Where MLflow stores artifacts: beside the default sqlite store; for an S3 search tracked by
    a server (MLFLOW_TRACKING_URI or --tracking-uri), the server's own default."""
    if not directory.is_local and (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        return None
    root = directory.default_tracking()[1]
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class SyncResult:
    search_id: str
    tracking_location: str
    new: int  # ledger rows logged now
    present: int  # ledger rows MLflow already had


def sync_runs(out: str | Path | SearchDir, tracking_uri: str | None = None) -> SyncResult:
    """Log every ledger row of the search in `out` that MLflow lacks; idempotent (a second call logs
    none). The URI: `tracking_uri`, else MLFLOW_TRACKING_URI, else the search's default store (search_dir.py)
    (for an s3:// search, the one in its local working directory)."""
    from transfer_automl.tracking.mlflow import MlflowTracker

    out = SearchDir.of(out)
    if not out.has_checkpoint():
        raise ConfigError(f"runs sync: {out} holds no search ({out.checkpoint} not found)")
    body = out.load_checkpoint()
    search_id = str(body["search_id"])
    ledger = out.ledger
    rounds = ledger.rounds()
    ledger.read()  # refuses a damaged or foreign ledger before anything is logged
    tracker = MlflowTracker(out.default_tracking_uri(), artifact_root=artifact_root(out, tracking_uri),
                            uri=tracking_uri)
    new = present = 0
    try:
        tracker.start(search_id, {**dict(body.get("search_settings", {})), "synced_from": str(out.store.uri)},
                      {"taml.synced": "true", **out.tracking_tags()})
        for ledger_file, rows in rounds:
            for row in rows:
                if tracker.has_trial(row["trial_id"]):
                    present += 1
                    continue
                tracker.log_trial({**row, "ledger_file": ledger_file}, json.loads(row["config"]))
                new += 1
        tracker.finish({}, status=tracker.previous_status or "FINISHED")
    except Exception as exc:
        raise TamlError(f"runs sync: tracker {tracker.location} failed after {new} new runs: "
                        f"{type(exc).__name__}: {exc}") from None
    return SyncResult(search_id, tracker.location, new, present)

"""MLflow tracker: the only module that imports mlflow.

One experiment per search (`taml/<search_id>`), one parent run for the controller with stepped
`controller/*` and `reward/<task>/*` metrics, one nested run per child trial with the
configuration as params, `child/*` metrics and tags linking it to its ledger row.

The tracking URI is the one given (`taml runs sync --tracking-uri`), else `MLFLOW_TRACKING_URI`
when set, else the embedded default (`sqlite:///<out>/mlflow.db`). For an HTTP server, MLflow's
own retries (7, with exponential backoff, 120 s timeout: minutes per call when the server is down)
are cut to `_HTTP_DEFAULTS` unless the user set those variables; `ResilientTracker` retries above.
When Kubeflow's MLflow integration sets `MLFLOW_EXPERIMENT_ID` and `MLFLOW_RUN_ID`, the
controller run is created in that experiment, nested under that run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transfer_automl.tracking.base import Tracker

_PARAM_MAX = 500  # MLflow's limit on param value length

# MLflow's HTTP client settings (mlflow/environment_variables.py), set only where the user did not.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


class MlflowTracker(Tracker):
    def __init__(self, default_uri: str, artifact_root: str | Path | None = None, uri: str | None = None):
        import logging

        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines would break the progress bar

        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri
        if self.uri.startswith(("http://", "https://")):
            for name, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
        self.location = self.uri
        _create_sqlite_store_atomically(self.uri)
        self.artifact_root = Path(artifact_root).resolve().as_uri() if artifact_root else None
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = ""
        self.run_id = ""
        self.last_step = 0
        self.child_runs: dict[str, tuple[str, str]] = {}  # trial id -> (run id, status), for idempotence
        self.previous_status = ""  # the controller run's status before start() reopened it ("" when new)

    def start(self, search_id: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        self.experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or self._experiment(f"taml/{search_id}")
        run_tags = {"taml.search_id": search_id, "taml.role": "controller", **tags}
        if os.environ.get("MLFLOW_RUN_ID"):
            run_tags["mlflow.parentRunId"] = os.environ["MLFLOW_RUN_ID"]
        existing = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`taml.search_id` = '{search_id}' and tags.`taml.role` = 'controller'",
            max_results=1,
        )
        if existing:  # a resumed search keeps logging into its controller run
            self.run_id = existing[0].info.run_id
            self.previous_status = existing[0].info.status
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, tags=run_tags, run_name=f"controller-{search_id}")
            self.run_id = run.info.run_id
            from mlflow.entities import Param

            self.client.log_batch(self.run_id, params=[Param(k, _param(v)) for k, v in sorted(params.items())])
        # Child runs already there (a resumed search, `taml runs sync`, or a controller run lost
        # while its children were kept): log_trial skips them, so any tracker object is idempotent.
        self._load_child_runs(search_id)

    def _load_child_runs(self, search_id: str) -> None:
        from mlflow.entities import ViewType

        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`taml.search_id` = '{search_id}' and tags.`taml.role` = 'child'",
                run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token,
            )
            for run in page:
                self.child_runs[run.data.tags["taml.trial_id"]] = (run.info.run_id, run.info.status)
            token = page.token
            if not token:
                return

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=self.artifact_root)

    def log_controller(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        self.last_step = step
        now = _now_ms()
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if _finite(v)]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def has_trial(self, trial_id: str) -> bool:
        """Whether the trial is logged whole (as of start() and this object's own logging)."""
        known = self.child_runs.get(trial_id)
        return known is not None and known[1] in ("FINISHED", "FAILED")

    def log_trial(self, row: dict[str, Any], config: dict[str, Any]) -> None:
        """Idempotent: a trial already logged is skipped; one cut off mid-log is logged again."""
        from mlflow.entities import Metric, Param

        if self.has_trial(row["trial_id"]):
            return
        known = self.child_runs.get(row["trial_id"])
        if known is not None:
            self.client.delete_run(known[0])

        tags = {
            "mlflow.parentRunId": self.run_id, "taml.role": "child", "taml.trial_id": row["trial_id"],
            "taml.search_id": row["search_id"], "taml.task": row["task"], "taml.status": row["status"],
            "taml.ledger_file": row.get("ledger_file", ""),
        }
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=row["trial_id"])
        step = int(row["controller_step"])
        now = _now_ms()
        metrics = [Metric(f"child/{k}", float(row[k]), now, step)
                   for k in ("val_accuracy", "test_accuracy", "reward", "duration_s") if _finite(row[k])]
        self.client.log_batch(run.info.run_id, metrics=metrics,
                              params=[Param(k, _param(v)) for k, v in sorted(config.items())])
        status = "FINISHED" if row["status"] == "ok" else "FAILED"
        self.client.set_terminated(run.info.run_id, status=status)
        self.child_runs[row["trial_id"]] = (run.info.run_id, status)

    def finish(self, summary: dict[str, float], status: str = "FINISHED") -> None:
        if not self.run_id:
            return
        from mlflow.entities import Metric

        now = _now_ms()
        batch = [Metric(k, float(v), now, self.last_step) for k, v in summary.items() if _finite(v)]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)
        self.client.set_terminated(self.run_id, status=status)


def _create_sqlite_store_atomically(uri: str) -> None:
    """MLflow creates a new sqlite store's schema in many steps; a process killed midway leaves a
    database that MLflow can neither use nor migrate. Build it under a temporary name and rename."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri[len("sqlite:///"):])
    if path.exists():
        return
    from mlflow.tracking import MlflowClient

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.init")
    tmp.unlink(missing_ok=True)
    MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)  # creates the schema
    os.replace(tmp, path)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:_PARAM_MAX]


def _finite(value: Any) -> bool:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return v == v and v not in (float("inf"), float("-inf"))


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)

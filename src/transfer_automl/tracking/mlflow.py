"""MLflow tracker: the only module that imports mlflow.

One experiment per search (`taml/<search_id>`), one parent run for the controller with stepped
`controller/*` and `reward/<task>/*` metrics, one nested run per child trial with the
configuration as params, `child/*` metrics and tags linking it to its ledger row.

What the MLflow UI shows:
* each experiment is a model-training experiment (the tag `mlflow.experimentKind` =
  `custom_model_development`, MLflow 3's experiment type), not a GenAI one. MLflow 3.17's UI also
  keeps a per-browser "GenAI / Model training" switch; `browse_url` opens the runs either way.
* a child run is named `<task> #<n>`: its task and its trial number in the search (1, 2, ...);
* a child run starts and ends when its child trained (the ledger row's `started_at` and
  `ended_at`), so the UI's Duration is the training time;
* each task's data is a dataset input (`log_inputs`): name = task, digest = the content hash of
  the Parquet file, source = that file; on the controller run all tasks, on a child run its task.

The tracking URI is the one given (`taml runs sync --tracking-uri`), else `MLFLOW_TRACKING_URI`
when set, else the default (study/search_dir.py: the store local searches share,
`<home>/mlflow.db`, or an older search's own `<out>/mlflow.db`). For an HTTP server, MLflow's
own retries (7, with exponential backoff, 120 s timeout: minutes per call when the server is down)
are cut to `_HTTP_DEFAULTS` unless the user set those variables; `ResilientTracker` retries above.
When Kubeflow's MLflow integration sets `MLFLOW_EXPERIMENT_ID` and `MLFLOW_RUN_ID`, the
controller run is created in that experiment, nested under that run. Artifacts go where the store
puts them: `<out>/mlartifacts` for the embedded sqlite store, the server's artifact store (say
`mlflow server --serve-artifacts --artifacts-destination s3://...`) for an HTTP server.

`MlflowModelRegistry` logs a trained child into its trial's run and registers it
(tracking/champion.py says which version holds the alias `champion`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from transfer_automl.tracking.base import TaskData, Tracker, check_tracking_uri
from transfer_automl.tracking.champion import (
    CHAMPION_ALIAS,
    ChampionCandidate,
    RegisteredChampion,
    ServingModel,
    moves_alias,
    registered_model_name,
)

_PARAM_MAX = 500  # MLflow's limit on param value length
# MLflow 3's experiment type (the UI's "Machine learning" / "GenAI apps & agents"; the Python
# client writes it in mlflow/demo, the UI reads it in its experiment page).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
DATASET_CONTEXT = "training"  # the `mlflow.data.context` tag of a dataset input

# MLflow's HTTP client settings (mlflow/environment_variables.py), set only where the user did not.
_KEY_UNSAFE = re.compile(r"[^\w./\- :]")
_KEY_MAX = 250

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

        self.uri = _resolve_uri(uri, default_uri)
        self.location = self.uri
        # A local artifact root is only for the embedded store: a server stores artifacts itself.
        self.artifact_root = Path(artifact_root).resolve().as_uri() if artifact_root and not _is_http(self.uri) else None
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = ""
        self.run_id = ""
        self.last_step = 0
        self.child_runs: dict[str, tuple[str, str]] = {}  # trial id -> (run id, status), for idempotence
        self.datasets: dict[str, Any] = {}  # task -> its mlflow DatasetInput (log_datasets)
        self.batch_size = 1  # trials per round: a trial's number is step * batch_size + k + 1
        self.previous_status = ""  # the controller run's status before start() reopened it ("" when new)

    def start(self, search_id: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        self.experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or self._experiment(search_experiment(search_id))
        self.batch_size = _positive(params.get("batch_size"), 1)
        run_tags = {"taml.search_id": search_id, "taml.role": "controller", **tags}
        if os.environ.get("MLFLOW_RUN_ID"):
            run_tags["mlflow.parentRunId"] = os.environ["MLFLOW_RUN_ID"]
        existing = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`taml.search_id` = '{search_id}' and tags.`taml.role` = 'controller'",
            max_results=1,
        )
        if existing:  # a resumed search keeps logging into its controller run
            self.run_id = existing[0].info.run_id
            self._adopt(existing[0], search_id, tags)
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
                for promoted in _promoted_trials(run.data.tags, search_id):
                    self.child_runs[promoted] = (run.info.run_id, run.info.status)
            token = page.token
            if not token:
                return

    def _adopt(self, run: Any, search_id: str, tags: dict[str, str]) -> None:
        """Continue in the controller run `run` only if it is this search's: a search with the same
        id in another directory and with another random id (`taml.search_uid`) is refused; a run
        from before the id was recorded gets it (and a moved search its new directory)."""
        ours, theirs = tags.get("taml.search_uid"), run.data.tags.get("taml.search_uid")
        moved_or_renamed = run.data.tags.get("taml.search_dir") != tags.get("taml.search_dir")
        if ours and theirs and ours != theirs and moved_or_renamed:  # (the same directory: its record was lost)
            _refuse_taken(search_id, self.location, run, tags.get("taml.search_dir", ""))
        for key in ("taml.search_uid", "taml.search_dir"):
            if tags.get(key) and run.data.tags.get(key) != tags[key]:
                self.client.set_tag(self.run_id, key, tags[key])

    def _experiment(self, name: str) -> str:
        """The search's experiment, created as a model-training experiment (one created before
        taml set the type gets it, unless someone chose another)."""
        found = self.client.get_experiment_by_name(name)
        if found is None:
            return self.client.create_experiment(name, artifact_location=self.artifact_root,
                                                 tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
        if EXPERIMENT_KIND_TAG not in found.tags:
            self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
        return found.experiment_id

    def browse_url(self, server: str = "http://127.0.0.1:5000") -> str:
        """The experiment's runs in the MLflow UI at `server` (this tracker's own URI when it is a
        server). `workflowType=machine_learning` opens the runs table even where the browser's
        MLflow 3.17 switch is on GenAI (which shows an overview of traces instead)."""
        base = self.uri.rstrip("/") if _is_http(self.uri) else server.rstrip("/")
        return f"{base}/#/experiments/{self.experiment_id}/runs?workflowType=machine_learning"

    def log_datasets(self, datasets: Sequence[TaskData]) -> None:
        """Each task's data as a dataset input of the controller run; `log_trial` adds its task's to
        each child run. Idempotent (MLflow keeps one input per run, name and digest)."""
        from mlflow.entities import DatasetInput, InputTag

        self.datasets = {d.task: DatasetInput(_dataset_entity(d), [InputTag("mlflow.data.context", DATASET_CONTEXT)])
                         for d in datasets}
        if self.datasets:
            self.client.log_inputs(self.run_id, datasets=list(self.datasets.values()))

    def log_controller(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        self.last_step = step
        now = _now_ms()
        keys = _keys(metrics)
        batch = [Metric(keys[k], float(v), now, step) for k, v in metrics.items() if _finite(v)]
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
        from mlflow.entities import Param

        if self.has_trial(row["trial_id"]):
            return
        parent = row.get("parent_trial_id")
        if parent and parent in self.child_runs:  # a promotion: the next step of its configuration's run
            self._log_rung(row)
            return
        known = self.child_runs.get(row["trial_id"])
        if known is not None:
            self.client.delete_run(known[0])

        tags = {
            "mlflow.parentRunId": self.run_id, "taml.role": "child", "taml.trial_id": row["trial_id"],
            "taml.search_id": row["search_id"], "taml.task": row["task"], "taml.status": row["status"],
            "taml.ledger_file": row.get("ledger_file", ""),
            **({"taml.rung": str(row.get("rung") or 0)} if row.get("budget") is not None else {}),
        }
        # Multi-fidelity children log one step per rung (promotions continue this run: _log_rung).
        step = int(row.get("rung") or 0) if row.get("budget") is not None else int(row["controller_step"])
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=self.trial_name(row),
                                     start_time=_epoch_ms(row.get("started_at")))
        if row["task"] in self.datasets:
            self.client.log_inputs(run.info.run_id, datasets=[self.datasets[row["task"]]])
        now = _now_ms()
        keys = _keys(config)
        metrics = _child_metrics(row, now, step)
        self.client.log_batch(run.info.run_id, metrics=metrics,
                              params=[Param(keys[k], _param(v)) for k, v in sorted(config.items())])
        status = "FINISHED" if row["status"] == "ok" else "FAILED"
        self.client.set_terminated(run.info.run_id, status=status, end_time=_epoch_ms(row.get("ended_at")))
        self.child_runs[row["trial_id"]] = (run.info.run_id, status)

    def trial_name(self, row: dict[str, Any]) -> str:
        """`<task> #<n>`, n the trial's number in the search (1-based: step * batch size + k + 1)."""
        try:
            k = int(str(row["trial_id"]).rsplit("/", 1)[-1])
            number = int(row["controller_step"]) * self.batch_size + k + 1
        except (KeyError, ValueError):
            return f"{row['task']} {row['trial_id']}"
        return f"{row['task']} #{number}"

    def _log_rung(self, row: dict[str, Any]) -> None:
        """A promoted trial's results as step `rung` of its parent's run, tagged so the run is found
        by the promoted trial's id too (`trial_run_id`)."""
        from mlflow.entities import RunTag

        run_id = self.child_runs[row["parent_trial_id"]][0]
        rung = int(row.get("rung") or 0)
        self.client.log_batch(run_id, metrics=_child_metrics(row, _now_ms(), rung), tags=[
            RunTag(promoted_tag(row["trial_id"]), "true"), RunTag("taml.rung", str(rung)),
            RunTag("taml.latest_trial_id", row["trial_id"]), RunTag("taml.status", row["status"])])
        status = "FINISHED" if row["status"] == "ok" else "FAILED"
        self.client.set_terminated(run_id, status=status, end_time=_epoch_ms(row.get("ended_at")))
        self.child_runs[row["trial_id"]] = (run_id, status)

    def finish(self, summary: dict[str, float], status: str = "FINISHED") -> None:
        if not self.run_id:
            return
        from mlflow.entities import Metric

        now = _now_ms()
        keys = _keys(summary)
        batch = [Metric(keys[k], float(v), now, self.last_step) for k, v in summary.items() if _finite(v)]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)
        self.client.set_terminated(self.run_id, status=status)


def search_experiment(search_id: str) -> str:
    """The experiment of a search's runs, unless Kubeflow's MLFLOW_EXPERIMENT_ID names another."""
    return f"taml/{search_id}"


class MlflowModelRegistry:
    """Logs a trained child as an MLflow model in its trial's run and registers it as a version of
    `taml-<task>`; the alias `champion` moves by `moves_alias` (tracking/champion.py)."""

    def __init__(self, default_uri: str, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = _resolve_uri(uri, default_uri)
        self.client = MlflowClient(tracking_uri=self.uri)  # registry: MLFLOW_REGISTRY_URI if set, else this store

    def trial_run_id(self, search_id: str, trial_id: str) -> str | None:
        """The child run of a trial (MlflowTracker.log_trial), or None when MLflow lacks it."""
        child = f"tags.`taml.search_id` = '{search_id}' and tags.`taml.role` = 'child'"
        return (self._first_run_id(search_id, f"{child} and tags.`taml.trial_id` = '{trial_id}'")
                # a promoted trial (multi-fidelity) logs into its lineage's run
                or self._first_run_id(search_id, f"{child} and tags.`{promoted_tag(trial_id)}` = 'true'"))

    def register(self, candidate: ChampionCandidate, model: ServingModel, run_id: str) -> RegisteredChampion:
        """Log `model` into `run_id` and register it (once per trial), then apply the champion rule."""
        name = registered_model_name(candidate.task)
        self._ensure_registered_model(name, candidate.task)
        version = self._version_of_trial(name, candidate.trial_id, candidate.model_source)
        new_version = version is None
        if version is None:
            # The registry resolves `models:/<id>` through the global tracking URI, so both calls sit in it.
            with _fluent_tracking_uri(self.uri):
                model_uri, model_id = self._log_model(run_id, model)
                version = self.client.create_model_version(
                    name, source=model_uri, run_id=run_id, tags=candidate.tags(),
                    description=candidate.description(), model_id=model_id,
                )
            self.client.set_tag(run_id, "taml.registered_model", f"{name}/{version.version}")
        champion = self._champion(name)
        previous = str(champion.version) if champion is not None else None
        is_champion = previous == str(version.version)
        if not is_champion and moves_alias(candidate.val_accuracy, _val_accuracy(champion)):
            self.client.set_registered_model_alias(name, CHAMPION_ALIAS, str(version.version))
            is_champion = True
        return RegisteredChampion(name, str(version.version), run_id, f"models:/{name}/{version.version}", candidate,
                                  is_champion, previous, new_version)

    def _ensure_registered_model(self, name: str, task: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(
                name, tags={"taml.task": task},
                description=f"Best children for task {task} found by transfer_automl searches, one version per "
                            f"search; alias `{CHAMPION_ALIAS}`: the best by validation accuracy.",
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _version_of_trial(self, name: str, trial_id: str, source: str = "ledger"):
        """The version registered for this trial's model from `source` (a version from before the
        tag holds the ledger's child)."""
        for version in self.client.search_model_versions(f"name = '{name}'"):
            if version.tags.get("taml.trial_id") == trial_id and version.tags.get("taml.model_source", "ledger") == source:
                return version
        return None

    def log_refit(self, search_id: str, report: dict[str, Any]) -> None:
        """The refit's cost and scores (study/refit.py's refit.json) on the search's controller run:
        `refit/total_cost_s`, `refit/<task>/<rank>/{cost_s, steps, max_steps, val_accuracy,
        test_accuracy}` (rank 1 = the search's best) and `refit/<task>/champion_rank`; refit.json
        as an artifact. A search whose controller run MLflow lacks is skipped."""
        run_id = self._controller_run_id(search_id)
        if run_id is None:
            return
        now = _now_ms()
        metrics = {"refit/total_cost_s": float(report["total_cost_s"])}
        for task, entry in report["tasks"].items():
            for rank, c in enumerate(entry["candidates"], 1):
                prefix = f"refit/{task}/{rank}"
                metrics |= {f"{prefix}/cost_s": c["cost_s"], f"{prefix}/steps": c["steps"],
                            f"{prefix}/max_steps": c["max_steps"], f"{prefix}/val_accuracy": c["refit_val_accuracy"],
                            f"{prefix}/test_accuracy": c["refit_test_accuracy"]}
                if c["trial_id"] == entry["champion_trial_id"]:
                    metrics[f"refit/{task}/champion_rank"] = rank
            if entry.get("ensemble_trial_ids"):
                metrics |= {f"refit/{task}/ensemble_size": len(entry["ensemble_trial_ids"]),
                            f"refit/{task}/ensemble_val_accuracy": entry["champion_val_accuracy"],
                            f"refit/{task}/ensemble_test_accuracy": entry["champion_test_accuracy"]}
        from mlflow.entities import Metric

        keys = _keys(metrics)
        self.client.log_batch(run_id, metrics=[Metric(keys[k], float(v), now, 0) for k, v in metrics.items()
                                               if _finite(v)])
        self.client.set_tag(run_id, "taml.refit", f"{report['mode']} (k {report['k']})")
        with tempfile.TemporaryDirectory(prefix="taml-refit-") as tmp:
            path = Path(tmp) / "refit.json"
            path.write_text(json.dumps(report, indent=2))
            self.client.log_artifact(run_id, str(path))

    def _controller_run_id(self, search_id: str) -> str | None:
        return self._first_run_id(search_id, f"tags.`taml.search_id` = '{search_id}' and tags.`taml.role` = 'controller'")

    def _first_run_id(self, search_id: str, filter_string: str) -> str | None:
        """The first active run of the search's experiment (MLFLOW_EXPERIMENT_ID inside a pipeline
        that names one) matching `filter_string`; None when there is none."""
        from mlflow.entities import ViewType

        experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
        if not experiment_id:
            found = self.client.get_experiment_by_name(search_experiment(search_id))
            if found is None:
                return None
            experiment_id = found.experiment_id
        runs = self.client.search_runs([experiment_id], filter_string=filter_string,
                                       run_view_type=ViewType.ACTIVE_ONLY, max_results=1)
        return runs[0].info.run_id if runs else None

    def _champion(self, name: str):
        alias_version = self.client.get_registered_model(name).aliases.get(CHAMPION_ALIAS)
        return self.client.get_model_version(name, alias_version) if alias_version is not None else None

    def _log_model(self, run_id: str, model: ServingModel) -> tuple[str, str]:
        """`log_serving_model` into the trial run, reopened and closed again with the status and end
        time it had (a failed upload must not mark a good trial FAILED, and the run's Duration stays
        the trial's, not the time until its model was registered)."""
        import mlflow

        before = self.client.get_run(run_id).info
        status = before.status if before.status in ("FINISHED", "FAILED", "KILLED") else "FINISHED"
        mlflow.start_run(run_id=run_id)
        try:
            info = log_serving_model(model)
        finally:
            mlflow.end_run(status=status)
            if before.end_time:
                self.client.set_terminated(run_id, status=status, end_time=before.end_time)
        return info.model_uri, info.model_id


def serving_signature(model: ServingModel) -> Any:
    """Input: one string column `text`; output: `label` and a double `prob_<class>` per class."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    outputs = [ColSpec("string", "label")] + [ColSpec("double", f"prob_{c}") for c in model.classes]
    return ModelSignature(inputs=Schema([ColSpec("string", "text")]), outputs=Schema(outputs))


def log_serving_model(model: ServingModel, name: str = "model") -> Any:
    """mlflow.pyfunc.log_model from code (no cloudpickled python_model) into the active run."""
    import mlflow.pyfunc
    import pandas as pd

    return mlflow.pyfunc.log_model(
        name=name, python_model=model.code_file, artifacts={"bundle": model.bundle},
        signature=serving_signature(model), input_example=pd.DataFrame({"text": model.input_example}),
        pip_requirements=list(model.pip_requirements))


def save_serving_model(model: ServingModel, path: str | Path) -> Path:
    """The same model saved to a local directory (tests, benchmarks, `taml predict` on a path)."""
    import mlflow.pyfunc
    import pandas as pd

    mlflow.pyfunc.save_model(
        str(path), python_model=model.code_file, artifacts={"bundle": model.bundle},
        signature=serving_signature(model), input_example=pd.DataFrame({"text": model.input_example}),
        pip_requirements=list(model.pip_requirements))
    return Path(path)


def load_serving_model(model_uri: str, tracking_uri: str | None = None) -> tuple[Any, list[str]]:
    """A pyfunc model (`models:/taml-<task>@champion`, `runs:/...`, a local path, s3://...) and the
    input columns its signature names ([] when it has none). The registry is the one at
    `tracking_uri`, else MLFLOW_TRACKING_URI; a model MLflow cannot find is a one-line error."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from transfer_automl.errors import PredictionError

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        check_tracking_uri(uri, "tracking URI")
    elif model_uri.startswith("models:/"):
        raise PredictionError(f"model {model_uri!r}: which registry? set MLFLOW_TRACKING_URI or pass --tracking-uri")
    try:
        with _fluent_tracking_uri(uri) if uri else nullcontext():
            model = mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        raise PredictionError(f"model {model_uri!r} cannot be loaded{f' in MLflow {uri}' if uri else ''}: "
                              f"{' '.join(str(exc).split())[:300]}") from None
    signature = model.metadata.signature
    names = signature.inputs.input_names() if signature is not None and signature.inputs.has_input_names() else []
    return model, [str(n) for n in names]


def _val_accuracy(version: Any) -> float | None:
    """The champion's validation accuracy; None (the alias moves) when a version lacks the tag."""
    if version is None:
        return None
    try:
        return float(version.tags["taml.val_accuracy"])
    except (KeyError, ValueError):
        return None


@contextmanager
def _fluent_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent calls (log_model, load_model) work on the global tracking URI; set it for the call and put back
    both it and MLFLOW_TRACKING_URI (which mlflow.set_tracking_uri also changes)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    previous, previous_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def _resolve_uri(uri: str | None, default_uri: str) -> str:
    """The URI given, else MLFLOW_TRACKING_URI, else the default; short HTTP retries; a new sqlite
    store created whole."""
    resolved = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri
    check_tracking_uri(resolved, "tracking URI")
    if _is_http(resolved):
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
    _create_sqlite_store_atomically(resolved)
    return resolved


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


_EMPTY_STORE: bytes | None = None  # the first new store of this process, before anything was logged in it


def _create_sqlite_store_atomically(uri: str) -> None:
    """MLflow creates a new sqlite store's schema in many steps; a process killed midway leaves a
    database that MLflow can neither use nor migrate. Build it under a temporary name and rename.
    Building takes seconds (about 100 schema migrations), so later stores of the same process are
    copies of the first one, taken right after it was built."""
    global _EMPTY_STORE
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri[len("sqlite:///"):])
    if path.exists():
        return
    from mlflow.tracking import MlflowClient

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.init")
    tmp.unlink(missing_ok=True)
    if _EMPTY_STORE is None:
        _EMPTY_STORE = _empty_store_template()
    if _EMPTY_STORE is not None:
        tmp.write_bytes(_EMPTY_STORE)
    else:
        MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)  # creates the schema
        _EMPTY_STORE = tmp.read_bytes()
        _save_empty_store_template(_EMPTY_STORE)
    os.replace(tmp, path)


def _template_path() -> Path:
    """An empty store of this MLflow version, kept between processes (every pipeline step is one)."""
    from importlib.metadata import version

    from transfer_automl.paths import default_work_root

    return default_work_root() / "mlflow-templates" / f"empty-{version('mlflow')}.db"


def _empty_store_template() -> bytes | None:
    try:
        body = _template_path().read_bytes()
    except OSError:
        return None
    return body if body.startswith(b"SQLite format 3\x00") else None  # anything else is rebuilt


def _save_empty_store_template(body: bytes) -> None:
    """Written whole or not at all (a temporary name, then a rename); a read-only cache is no error."""
    target = _template_path()
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(body)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)


def promoted_tag(trial_id: str) -> str:
    """The tag marking a promoted trial's rung in its lineage's run: taml.promoted.<step>-<k>."""
    step, index = trial_id.rsplit("/", 2)[-2:]
    return f"taml.promoted.{step}-{index}"


def _promoted_trials(tags: dict[str, str], search_id: str) -> list[str]:
    out = []
    for key in tags:
        if key.startswith("taml.promoted."):
            step, _, index = key[len("taml.promoted."):].partition("-")
            out.append(f"{search_id}/{step}/{index}")
    return out


def _child_metrics(row: dict[str, Any], now: int, step: int) -> list[Any]:
    """child/* of a ledger row at `step`: accuracies, reward, duration; the budget and the expected
    cost (study/cost.py) when there are."""
    from mlflow.entities import Metric

    names = ("val_accuracy", "test_accuracy", "reward", "duration_s", "budget", "expected_cost_s")
    return [Metric(f"child/{k}", float(row[k]), now, step) for k in names
            if row.get(k) is not None and _finite(row[k])]


def _keys(names: Iterable[str]) -> dict[str, str]:
    """Metric or param keys MLflow accepts (letters, digits, `_-. :/`, at most 250 characters):
    task names and table columns may hold anything, and MLflow refuses a whole batch for one bad
    key. In each `/`-separated part, unsafe characters become `_` followed by a short hash of the
    part, so two names never merge (`reward/acc(%)/reward` -> `reward/acc____5c1e0b/reward`)."""
    return {name: _key(name) for name in names}


def _key(name: str) -> str:
    if not _KEY_UNSAFE.search(name) and len(name) <= _KEY_MAX:
        return name
    parts = [p if not _KEY_UNSAFE.search(p) else f"{_KEY_UNSAFE.sub('_', p)}_{hashlib.sha1(p.encode()).hexdigest()[:6]}"
             for p in name.split("/")]
    key = "/".join(parts)
    return key if len(key) <= _KEY_MAX else f"{key[:_KEY_MAX - 9]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:_PARAM_MAX]


def _finite(value: Any) -> bool:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return v == v and v not in (float("inf"), float("-inf"))


def _positive(value: Any, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number >= 1 else default


def _epoch_ms(when: Any) -> int | None:
    """Milliseconds since the epoch of a ledger timestamp (a datetime, naive meaning UTC, or ISO
    text); None (MLflow takes the time of the call) when there is none."""
    from datetime import UTC, datetime

    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when)
        except ValueError:
            return None
    if not isinstance(when, datetime):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _dataset_entity(data: Any):
    """An MLflow dataset for a task file (a `MetaDataset`: where it is and its hash, not its rows):
    the source resolved as MLflow resolves any uri (a local path or s3://...), the task's content
    hash as digest, its row count as profile."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset

    source = data.source if "://" in data.source else str(Path(data.source).absolute())
    with warnings.catch_warnings():  # MLflow registers the local source twice and warns that a path is ambiguous
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        resolved = resolve_dataset_source(source)
    described = MetaDataset(resolved, name=data.task, digest=data.digest).to_dict()
    return Dataset(name=described["name"], digest=described["digest"], source_type=described["source_type"],
                   source=described["source"], profile=json.dumps({"num_rows": int(data.rows)}))


def refuse_another_search(uri: str, search_id: str, search_dir: str) -> None:
    """ConfigError when the store at `uri` already holds a search `search_id` (for a new search:
    whichever directory it was in, its runs would be taken for this one's)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(search_experiment(search_id))
    if experiment is None:
        return
    runs = client.search_runs([experiment.experiment_id], max_results=1, filter_string=(
        f"tags.`taml.search_id` = '{search_id}' and tags.`taml.role` = 'controller'"))
    if runs:
        _refuse_taken(search_id, uri, runs[0], search_dir)


def _refuse_taken(search_id: str, location: str, run: Any, search_dir: str) -> None:
    from transfer_automl.errors import ConfigError

    theirs = run.data.tags.get("taml.search_dir")
    raise ConfigError(f"search_id {search_id!r} is taken in MLflow {location} by "
                      f"{f'the search in {theirs}' if theirs else 'an earlier search'}; give this search "
                      f"({search_dir}) another --search-id, or a store of its own (TAML_HOME)")


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)

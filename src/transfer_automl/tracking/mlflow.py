"""MLflow tracker: the only module that imports mlflow.

One experiment per search (`taml/<search_id>`), one parent run for the controller with stepped
`controller/*` and `reward/<task>/*` metrics, one nested run per child trial with the
configuration as params, `child/*` metrics and tags linking it to its ledger row.

The tracking URI is the one given (`taml runs sync --tracking-uri`), else `MLFLOW_TRACKING_URI`
when set, else the embedded default (`sqlite:///<out>/mlflow.db`). For an HTTP server, MLflow's
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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transfer_automl.tracking.base import Tracker, check_tracking_uri
from transfer_automl.tracking.champion import (
    CHAMPION_ALIAS,
    ChampionCandidate,
    RegisteredChampion,
    moves_alias,
    registered_model_name,
)

_PARAM_MAX = 500  # MLflow's limit on param value length

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
        self.previous_status = ""  # the controller run's status before start() reopened it ("" when new)

    def start(self, search_id: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        self.experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or self._experiment(search_experiment(search_id))
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
                for promoted in _promoted_trials(run.data.tags, search_id):
                    self.child_runs[promoted] = (run.info.run_id, run.info.status)
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
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=row["trial_id"])
        # Multi-fidelity children log one step per rung (promotions continue this run: _log_rung).
        step = int(row.get("rung") or 0) if row.get("budget") is not None else int(row["controller_step"])
        now = _now_ms()
        keys = _keys(config)
        metrics = _child_metrics(row, now, step)
        self.client.log_batch(run.info.run_id, metrics=metrics,
                              params=[Param(keys[k], _param(v)) for k, v in sorted(config.items())])
        status = "FINISHED" if row["status"] == "ok" else "FAILED"
        self.client.set_terminated(run.info.run_id, status=status)
        self.child_runs[row["trial_id"]] = (run.info.run_id, status)

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
        self.client.set_terminated(run_id, status=status)
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
        from mlflow.entities import ViewType

        experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
        if not experiment_id:
            found = self.client.get_experiment_by_name(search_experiment(search_id))
            if found is None:
                return None
            experiment_id = found.experiment_id
        runs = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`taml.search_id` = '{search_id}' and tags.`taml.role` = 'child' "
                                           f"and tags.`taml.trial_id` = '{trial_id}'",
            run_view_type=ViewType.ACTIVE_ONLY, max_results=1,
        )
        if not runs:  # a promoted trial (multi-fidelity) logs into its lineage's run
            runs = self.client.search_runs(
                [experiment_id], filter_string=f"tags.`taml.search_id` = '{search_id}' and tags.`taml.role` = 'child' "
                                               f"and tags.`{promoted_tag(trial_id)}` = 'true'",
                run_view_type=ViewType.ACTIVE_ONLY, max_results=1,
            )
        return runs[0].info.run_id if runs else None

    def register(self, candidate: ChampionCandidate, model: Any, run_id: str,
                 pip_requirements: list[str]) -> RegisteredChampion:
        """Log `model` into `run_id` and register it (once per trial), then apply the champion rule."""
        name = registered_model_name(candidate.task)
        self._ensure_registered_model(name, candidate.task)
        version = self._version_of_trial(name, candidate.trial_id)
        new_version = version is None
        if version is None:
            # The registry resolves `models:/<id>` through the global tracking URI, so both calls sit in it.
            with _fluent_tracking_uri(self.uri):
                model_uri, model_id = self._log_model(run_id, model, pip_requirements)
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

    def _version_of_trial(self, name: str, trial_id: str):
        for version in self.client.search_model_versions(f"name = '{name}'"):
            if version.tags.get("taml.trial_id") == trial_id:
                return version
        return None

    def _champion(self, name: str):
        alias_version = self.client.get_registered_model(name).aliases.get(CHAMPION_ALIAS)
        return self.client.get_model_version(name, alias_version) if alias_version is not None else None

    def _log_model(self, run_id: str, model: Any, pip_requirements: list[str]) -> tuple[str, str]:
        """mlflow.pytorch.log_model into the trial run, reopened and closed again with the status it
        had (a failed upload must not mark a good trial FAILED). Pickle, not torch.export (the
        default), which needs an input example and fails on the model's data-dependent branches
        (which tower, which input)."""
        import logging

        import mlflow
        import mlflow.pytorch

        status = self.client.get_run(run_id).info.status
        pytorch_log = logging.getLogger("mlflow.pytorch")
        level = pytorch_log.level
        pytorch_log.setLevel(logging.ERROR)  # its warning that pickle is unsafe to load: we chose pickle knowingly
        mlflow.start_run(run_id=run_id)
        try:
            info = mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                            pip_requirements=list(pip_requirements))
        finally:
            mlflow.end_run(status=status if status in ("FINISHED", "FAILED", "KILLED") else "FINISHED")
            pytorch_log.setLevel(level)
        return info.model_uri, info.model_id


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
    """mlflow.pytorch.log_model works on the global tracking URI; set it for the call and put back
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


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)

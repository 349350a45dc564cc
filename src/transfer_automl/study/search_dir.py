"""Where one search's state lives: a local directory or an `s3://bucket/prefix`, one layout.

    settings.json                      the SearchSettings (study.settings), changes on resume
    checkpoint.pt                      the search after the last told round (search.checkpoint)
    space.yaml                         the exact space searched
    ledger/round-<step>.parquet        committed trials (search.ledger)
    rounds/<step>/trials.json          the trials asked in a round (Study.ask_round)
    rounds/<step>/results/<k>.json     one finished child's ledger row (Study.run_trial)
    cache/features/...                 frozen features, unless --cache-dir says otherwise

    tracking.json                      a local search's default MLflow store and its random id (at its start)

Every file goes through one ArtifactStore, so `--out` and a pipeline's `search_dir` may be either.
What cannot live on S3 lives in a local working directory (`work_dir`): the default MLflow
sqlite store and copies of the artifacts logged to MLflow. For a local search that is the search
directory itself; for `s3://bucket/prefix` it is `$TAML_WORK_DIR/s3/bucket/prefix`, with
TAML_WORK_DIR defaulting to `$XDG_CACHE_HOME/transfer-automl` (`~/.cache/transfer-automl`), so a
resumed search finds the same MLflow store on the same machine.

The default MLflow store (`default_tracking_uri`; MLFLOW_TRACKING_URI overrides it):
* a local search shares one store and registry with the other searches started in the same
  place: `<home>/mlflow.db`, artifacts in `<home>/mlartifacts`, where home is $TAML_HOME, else the
  working directory (paths.tracking_home). The store is recorded in `tracking.json` when the
  search starts, so its resumes, `taml runs sync/register` and `taml report --mlflow` find it from
  any directory. The model registry is shared too: the alias `champion` compares searches.
* a search from before shared stores keeps its own `<out>/mlflow.db` (and `<out>/mlartifacts`),
  recorded as its store when it is resumed.
* an S3 search: `<work_dir>/mlflow.db`; set MLFLOW_TRACKING_URI to track it elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from transfer_automl.errors import ConfigError
from transfer_automl.paths import default_work_root, tracking_home
from transfer_automl.search import Ledger, load_checkpoint, save_checkpoint
from transfer_automl.space import SearchSpace
from transfer_automl.storage import ArtifactStore, LocalStore, get_store

CHECKPOINT_NAME = "checkpoint.pt"
SETTINGS_NAME = "settings.json"
SPACE_NAME = "space.yaml"
TRACKING_NAME = "tracking.json"


def round_prefix(step: int) -> str:
    return f"rounds/{int(step):06d}"


def trials_key(step: int) -> str:
    return f"{round_prefix(step)}/trials.json"


def result_key(step: int, index: int) -> str:
    return f"{round_prefix(step)}/results/{int(index):03d}.json"


def child_state_key(trial_id: str) -> str:
    """Where a multi-fidelity child waits to be continued: rounds/<step>/children/<k>.pt."""
    step, index = trial_id.rsplit("/", 2)[-2:]
    return f"{round_prefix(int(step))}/children/{int(index):03d}.pt"


class SearchDir:
    """The files of one search, under `location` (a path, `file://` or `s3://` uri)."""

    def __init__(self, location: str | Path):
        self.location = str(location)
        if not self.location:
            raise ConfigError("out: the search directory is empty")
        self.store: ArtifactStore = get_store(location)
        self.ledger = Ledger(self.store.sub("ledger"))

    @classmethod
    def of(cls, location: str | Path | SearchDir) -> SearchDir:
        """`location` itself if it is a SearchDir (keeping its store and clients), else a new one."""
        return location if isinstance(location, SearchDir) else cls(location)

    def __str__(self) -> str:
        return self.location

    @property
    def is_local(self) -> bool:
        return isinstance(self.store, LocalStore)

    @property
    def name(self) -> str:
        """The last part of the location (default search ids start with it)."""
        return Path(self.store.root).name if isinstance(self.store, LocalStore) else self.store.uri.rstrip("/").rsplit("/", 1)[-1]

    def where(self, key: str) -> Path | str:
        """A key's location for messages and results: a local Path or a uri."""
        return self.store.path(key) if isinstance(self.store, LocalStore) else self.store.join(key)

    # -- checkpoint --------------------------------------------------------------------------
    @property
    def checkpoint(self) -> Path | str:
        return self.where(CHECKPOINT_NAME)

    def has_checkpoint(self) -> bool:
        return self.store.exists(CHECKPOINT_NAME)

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        save_checkpoint(CHECKPOINT_NAME, payload, store=self.store)

    def load_checkpoint(self, space: SearchSpace | None = None, tasks: list[str] | None = None) -> dict[str, Any]:
        return load_checkpoint(CHECKPOINT_NAME, space, tasks, store=self.store)

    # -- small JSON files --------------------------------------------------------------------
    def read_json(self, key: str) -> Any:
        """The JSON in `key`; ConfigError naming the file if it is not JSON."""
        raw = self.store.get_bytes(key)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.where(key)} is not valid JSON ({exc})") from None

    def write_json(self, key: str, body: Any, indent: int | None = None, if_absent: bool = False) -> None:
        self.store.put_bytes(key, json.dumps(body, indent=indent).encode(), if_absent=if_absent)

    # -- local working directory -------------------------------------------------------------
    def work_dir(self) -> Path:
        """A local directory for what cannot live in the store (see the module docstring)."""
        if isinstance(self.store, LocalStore):
            return self.store.root
        parsed = urlparse(self.store.uri)
        return default_work_root() / "s3" / parsed.netloc / parsed.path.strip("/")

    def local_copy(self, key: str) -> Path:
        """A local file with `key`'s content: the file itself locally, else a copy in work_dir."""
        if isinstance(self.store, LocalStore):
            return self.store.path(key)
        target = self.work_dir() / "artifacts" / key
        self.store.get_file(key, target)
        return target

    def tracking_tags(self) -> dict[str, str]:
        """Tags that tie the search's MLflow runs to it (searches share a store): where it lives and
        the random id `tracking.json` records (which moves with the directory), if it has one."""
        tags = {"taml.search_dir": str(self.store.root.resolve()) if self.is_local else self.store.uri}
        uid = self.search_uid()
        return {**tags, "taml.search_uid": uid} if uid else tags

    def search_uid(self) -> str | None:
        """The search's random id in `tracking.json` (None: no record, a remote search)."""
        if not self.is_local or not self.store.exists(TRACKING_NAME):
            return None
        uid = self.read_json(TRACKING_NAME).get("search_uid")
        return uid if isinstance(uid, str) and uid else None

    def default_tracking_uri(self) -> str:
        """The search's MLflow store when none is given (the module docstring says which)."""
        return self.default_tracking()[0]

    def default_tracking(self) -> tuple[str, Path]:
        """(tracking URI, local artifact root) of the default store: recorded, own or shared."""
        own = self.work_dir() / "mlflow.db"
        recorded = self.recorded_tracking() if self.is_local else None
        if recorded is not None:  # first: a later `mlflow ui` run in the directory creates an empty mlflow.db
            return recorded
        if not self.is_local or own.exists():
            return f"sqlite:///{own.resolve()}", self.work_dir() / "mlartifacts"
        home = tracking_home()
        return f"sqlite:///{(home / 'mlflow.db').resolve()}", home / "mlartifacts"

    def recorded_tracking(self) -> tuple[str, Path] | None:
        """The store `tracking.json` records, or None; a damaged record is refused, naming it."""
        if not self.store.exists(TRACKING_NAME):
            return None
        body = self.read_json(TRACKING_NAME)
        if not isinstance(body, dict) or not isinstance(body.get("tracking_uri"), str) or \
                not isinstance(body.get("artifact_root"), str):
            raise ConfigError(f"{self.where(TRACKING_NAME)}: expected {{\"tracking_uri\": ..., \"artifact_root\": ...}}, "
                              f"got {str(body)[:200]}")
        return body["tracking_uri"], Path(body["artifact_root"])

    def record_tracking(self) -> None:
        """Record the default store of a local search in `tracking.json`, once (a search keeps the
        store it started with, whichever directory or TAML_HOME it is resumed from)."""
        if not self.is_local or self.store.exists(TRACKING_NAME):
            return
        import uuid

        uri, artifacts = self.default_tracking()
        self.write_json(TRACKING_NAME, {"tracking_uri": uri, "artifact_root": str(artifacts.resolve()),
                                        "search_uid": uuid.uuid4().hex}, indent=1)

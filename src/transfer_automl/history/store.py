"""The task history: what every finished search leaves for the next one.

A history is a local directory or an `s3://` prefix holding one entry per search:

    entries/<search_id>/manifest.json                 written last: the entry exists once it does
    entries/<search_id>/<version>/summary.parquet     the ledger summary (SUMMARY_COLUMNS)
    entries/<search_id>/<version>/checkpoint.pt       the controller checkpoint, when it has one

The manifest holds the search's space fingerprint (decision names and choices), its task
fingerprints (`TaskFingerprint`) and the SHA-256 of every file it names. A writer puts the files
under a fresh version folder first and the manifest last (one atomic write in every store), so a
crashed writer leaves only files no manifest names: readers never see half an entry. A search
finished again (resumed with more trials) writes a new version, then drops the old one.

A reader skips an entry it cannot trust (manifest not JSON, a field missing, a file missing or
not matching its checksum) with one warning naming it; a damaged entry is never fatal.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transfer_automl.errors import ConfigError, StorageError
from transfer_automl.storage import ArtifactStore, LocalStore, get_store, is_remote

FORMAT = 1
ENTRIES = "entries"
MANIFEST = "manifest.json"
SUMMARY = "summary.parquet"
CHECKPOINT = "checkpoint.pt"
# What a source needs (search/rank_ensemble.py reads task, config, val_accuracy, status) and what
# a person comparing searches wants beside it.
SUMMARY_COLUMNS = ("task", "config", "val_accuracy", "test_accuracy", "rung", "budget", "status")
NONE = "none"  # --history none: no history read or written


@dataclass(frozen=True)
class TaskFingerprint:
    """What identifies a task across searches.

    identity: the content hash of the task's data file (text, image tasks), or
    `benchmark:<name>/<task>` for a benchmark table's task, `table:<file hash>/<column>` for a
    user's table: two searches saw the same task exactly when their identities are equal."""

    name: str
    identity: str
    kind: str  # text | image | benchmark | table
    n_classes: int | None = None
    n_rows: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskFingerprint:
        return cls(name=str(d["name"]), identity=str(d["identity"]), kind=str(d["kind"]),
                   n_classes=None if d.get("n_classes") is None else int(d["n_classes"]),
                   n_rows=None if d.get("n_rows") is None else int(d["n_rows"]))


@dataclass(frozen=True)
class Entry:
    """One finished search in a history (its manifest, checked)."""

    history: HistoryStore
    entry_id: str
    search_id: str
    written_at: str
    space_name: str
    space_fingerprint: str
    tasks: tuple[TaskFingerprint, ...]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"summary": {"key", "sha256", "bytes"}}

    @property
    def where(self) -> str:
        return self.history.join(ENTRIES, self.entry_id)

    def summary(self):
        """The ledger summary (pyarrow Table); StorageError if its bytes do not match the manifest."""
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(self.history.checked_bytes(self.files["summary"], self.where)))

    def checkpoint_bytes(self) -> bytes | None:
        return self.history.checked_bytes(self.files["checkpoint"], self.where) if "checkpoint" in self.files else None


class HistoryStore:
    """A history at `uri` (a directory or s3:// prefix). `read_only` for the shipped starter."""

    def __init__(self, uri: str | Path, read_only: bool = False, label: str = ""):
        self.uri = str(uri)
        self.read_only = read_only
        self.label = label or self.uri
        try:
            self.store: ArtifactStore = get_store(uri)
        except StorageError as exc:
            raise ConfigError(f"history: {uri!r} is not a directory or s3:// prefix ({exc})") from None

    def __repr__(self) -> str:
        return f"HistoryStore({self.uri!r})"

    def join(self, *parts: str) -> str:
        return str(self.store.path("/".join(parts))) if isinstance(self.store, LocalStore) else self.store.join(*parts)

    # -- writing ----------------------------------------------------------------------------

    def write(self, search_id: str, space_name: str, space_fingerprint: str, tasks: list[TaskFingerprint],
              summary, checkpoint: bytes | None = None) -> Entry:
        """Add (or replace) the entry of `search_id`: its files under a new version, the manifest
        last. `summary`: a pyarrow Table with SUMMARY_COLUMNS."""
        import pyarrow.parquet as pq

        if self.read_only:
            raise ConfigError(f"history: {self.label} is read-only")
        missing = sorted(set(SUMMARY_COLUMNS) - set(summary.column_names))
        if missing:
            raise ConfigError(f"history: the summary of {search_id} lacks column(s) {missing}")
        entry_dir = f"{ENTRIES}/{search_id}"
        version = f"v-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        buffer = io.BytesIO()
        pq.write_table(summary.select(list(SUMMARY_COLUMNS)), buffer)
        files = {"summary": self._put(f"{entry_dir}/{version}/{SUMMARY}", buffer.getvalue())}
        if checkpoint is not None:
            files["checkpoint"] = self._put(f"{entry_dir}/{version}/{CHECKPOINT}", checkpoint)
        old = self._manifest_versions(entry_dir)
        manifest = {"format": FORMAT, "search_id": search_id, "written_at": datetime.now(UTC).isoformat(),
                    "space": {"name": space_name, "fingerprint": space_fingerprint},
                    "tasks": [asdict(t) for t in tasks], "rows": summary.num_rows, "files": files}
        self.store.put_bytes(f"{entry_dir}/{MANIFEST}", json.dumps(manifest, indent=1).encode())  # the commit
        for key in self.store.list(f"{entry_dir}/"):  # the versions the new manifest replaced
            if key.split("/")[2] in old and key.split("/")[2] != version:
                self.store.delete(key)
        return self._entry(search_id, manifest)

    def _put(self, key: str, data: bytes) -> dict[str, Any]:
        self.store.put_bytes(key, data)
        return {"key": key, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    def _manifest_versions(self, entry_dir: str) -> set[str]:
        return {key.split("/")[2] for key in self.store.list(f"{entry_dir}/") if key.count("/") >= 3}

    # -- reading ----------------------------------------------------------------------------

    def entries(self) -> Iterator[Entry]:
        """Every entry whose manifest reads, newest first; a damaged one is skipped with a warning."""
        try:
            keys = [k for k in self.store.list(f"{ENTRIES}/") if k.endswith(f"/{MANIFEST}") and k.count("/") == 2]
        except StorageError as exc:
            warn(f"history {self.label} cannot be listed, so it is not used: {exc}")
            return
        found = []
        for key in keys:
            entry_id = key.split("/")[1]
            try:
                manifest = json.loads(self.store.get_bytes(key))
                found.append(self._entry(entry_id, manifest))
            except (StorageError, ValueError, KeyError, TypeError) as exc:
                warn(f"history entry {self.join(ENTRIES, entry_id)} is skipped: its {MANIFEST} is unreadable "
                     f"({type(exc).__name__}: {str(exc)[:200]})")
        yield from sorted(found, key=lambda e: e.written_at, reverse=True)

    def _entry(self, entry_id: str, manifest: Mapping[str, Any]) -> Entry:
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, not {FORMAT}")
        files = {str(k): dict(v) for k, v in dict(manifest["files"]).items()}
        if "summary" not in files or not all({"key", "sha256"} <= set(v) for v in files.values()):
            raise KeyError("files.summary")
        return Entry(self, entry_id, str(manifest["search_id"]), str(manifest["written_at"]),
                     str(manifest["space"]["name"]), str(manifest["space"]["fingerprint"]),
                     tuple(TaskFingerprint.from_dict(t) for t in manifest["tasks"]), files)

    def checked_bytes(self, file: Mapping[str, Any], where: str) -> bytes:
        data = self.store.get_bytes(str(file["key"]))
        if hashlib.sha256(data).hexdigest() != file["sha256"]:
            raise StorageError(f"{where}: {file['key']} does not match the checksum its {MANIFEST} records")
        return data


def warn(message: str) -> None:
    print(f"taml: warning: {message}", file=sys.stderr)


# -- where histories are ------------------------------------------------------------------------

HISTORY_ENV = "TAML_HISTORY"
STARTER_DIR = Path(__file__).resolve().parent / "starter"


def default_history_uri() -> str:
    """$TAML_HISTORY, else <work root>/history (paths.default_work_root: ~/.cache/transfer-automl)."""
    import os

    from transfer_automl.paths import default_work_root

    return os.environ.get(HISTORY_ENV) or str(default_work_root() / "history")


def check_history_uri(value: str | None, where: str = "history") -> str | None:
    """The history a search uses: None for `none`, else the uri (default: default_history_uri()).
    Refuses, naming it, a value that is not a directory or s3:// prefix (a file, another scheme)."""
    if value is not None and value.strip().lower() == NONE:
        return None
    uri = value.strip() if value and value.strip() else default_history_uri()
    try:
        store = get_store(uri)
    except StorageError as exc:
        raise ConfigError(f"{where}: {value!r} is not a directory or s3:// prefix, nor 'none' ({exc})") from None
    if not is_remote(uri) and isinstance(store, LocalStore) and store.root.exists() and not store.root.is_dir():
        raise ConfigError(f"{where}: {uri} is a file, not a directory for the task history")
    return uri


def user_history(value: str | None) -> HistoryStore | None:
    uri = check_history_uri(value)
    return None if uri is None else HistoryStore(uri)


def starter_history() -> HistoryStore:
    """The history shipped in the package (built by `make starter-history`): read-only."""
    return HistoryStore(STARTER_DIR, read_only=True, label="the shipped starter history")

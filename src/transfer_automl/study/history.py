"""The study's side of the task history (transfer_automl.history): what a finished search
records, and what a `--transfer auto` search starts from.

`record_search` runs in `Study.finish` (so `taml search` and a pipeline's final step both write);
`resolve_auto_transfer` runs when a new search opens with `transfer=auto`: it picks the relevant
earlier searches (history/select.py), writes their rows to `history-sources.parquet` in the
search directory and makes the search a rank-ensemble over them; with none it stays the scratch
search it was asked for, and says so.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from transfer_automl.errors import ConfigError, StorageError
from transfer_automl.history import (
    HistoryStore,
    TaskFingerprint,
    check_history_uri,
    select_sources,
    starter_history,
)
from transfer_automl.history.store import SUMMARY_COLUMNS, warn

SOURCES_NAME = "history-sources.parquet"  # in the search directory: the rows a transfer=auto search uses
AUTO_METHOD = "rank-ensemble"


def task_fingerprints(settings: Any, backend: Any) -> list[TaskFingerprint]:
    """Each task's identity (history/store.py TaskFingerprint): its data's content hash, or the
    benchmark and task, or the user's table file hash and column."""
    out = []
    table_hash = _table_hash(settings.table) if settings.table else ""
    for name in backend.task_names:
        task = backend.task_objects[name]
        if settings.benchmark:
            out.append(TaskFingerprint(name, f"benchmark:{settings.benchmark}/{name}", "benchmark"))
        elif settings.table:
            out.append(TaskFingerprint(name, f"table:{table_hash}/{name}", "table"))
        else:
            kind = "image" if hasattr(task, "pixels") else "text"
            out.append(TaskFingerprint(name, str(task.content_hash), kind, n_classes=len(task.classes),
                                       n_rows=len(task.labels)))
    return out


def _table_hash(location: str) -> str:
    from transfer_automl.storage import split_uri

    store, key = split_uri(location)
    return hashlib.sha256(store.get_bytes(key)).hexdigest()[:16]


# -- writing ----------------------------------------------------------------------------------


def record_search(study: Any, on_start: Callable[[str], None] | None = None) -> str | None:
    """Write the finished search to its history (settings.history); returns the entry's location,
    None when there is none (`none`, an in-memory study). `on_start(history uri)` hears it begin.
    A failure to write is a warning: the search itself is finished and kept."""
    import pyarrow as pa

    from transfer_automl.search import ControllerSearch
    from transfer_automl.study.search_dir import CHECKPOINT_NAME

    if study.directory is None:
        return None
    uri = check_history_uri(study.settings.history)
    if uri is None:
        return None
    if on_start is not None:
        on_start(uri)
    rows = [r.to_dict() for r in study.rows()]
    summary = pa.table({c: [r.get(c) for r in rows] for c in SUMMARY_COLUMNS},
                       schema=pa.schema([("task", pa.string()), ("config", pa.string()),
                                         ("val_accuracy", pa.float64()), ("test_accuracy", pa.float64()),
                                         ("rung", pa.int64()), ("budget", pa.float64()), ("status", pa.string())]))
    try:
        checkpoint = study.directory.store.get_bytes(CHECKPOINT_NAME) \
            if isinstance(study.search, ControllerSearch) else None
        entry = HistoryStore(uri).write(study.search.search_id, study.search.space.name,
                                        study.search.space.fingerprint(),
                                        task_fingerprints(study.settings, study.backend), summary, checkpoint)
    except (StorageError, OSError) as exc:
        warn(f"the search is finished, but its history entry could not be written to {uri}: {str(exc)[:300]}")
        return None
    return entry.where


# -- --transfer auto ----------------------------------------------------------------------------


def resolve_auto_transfer(settings: Any, backend: Any, directory: Any) -> tuple[Any, dict[str, Any]]:
    """(the settings the search runs with, what settings.json records under `_history`) for a new
    search with transfer=auto: rank-ensemble over the chosen sources, or the search asked for."""
    if settings.method_options.get("sources"):
        raise ConfigError("method_options.sources: --transfer auto chooses the sources from the history; "
                          "leave sources out, or drop --transfer auto to name them")
    uri = check_history_uri(settings.history)
    histories = ([HistoryStore(uri)] if uri is not None else []) + [starter_history()]
    selection = select_sources(histories, backend.space.fingerprint(), task_fingerprints(settings, backend))
    record = {"history": uri or "none", **selection.record()}
    if not selection.num_rows:
        print(f"taml: --transfer auto: no earlier search in {uri or 'no user history'} or the starter history "
              f"searched space {backend.space.name!r} ({backend.space.fingerprint()}); this is a scratch "
              f"{settings.method} search", file=sys.stderr)
        return settings, {**record, "method": settings.method}
    from transfer_automl.study.settings import method_option_names

    foreign = sorted(set(settings.method_options) - set(method_option_names(AUTO_METHOD)))
    if foreign:
        raise ConfigError(f"method_options: {foreign} are not settings of {AUTO_METHOD}, which --transfer auto "
                          "runs when the history has earlier searches of this space")
    directory.store.write_parquet(SOURCES_NAME, selection.table())
    sources = str(directory.where(SOURCES_NAME))
    used = ", ".join(f"{u['search_id']} ({', '.join(u['tasks'])})" for u in selection.used)
    print(f"taml: --transfer auto: {AUTO_METHOD} over {selection.num_rows} results of "
          f"{len(selection.used)} earlier search(es): {used[:400]}", file=sys.stderr)
    settings = replace(settings, method=AUTO_METHOD,
                       method_options={**settings.method_options, "sources": sources})
    return settings, {**record, "method": AUTO_METHOD, "sources_file": sources}

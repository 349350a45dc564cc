"""`--transfer auto`: which earlier searches a new search learns from, chosen from the histories.

Rules, in order (docs: README "Task history"):

1. Only entries of the same search space (the fingerprint of decision names and choices): a
   configuration means the same thing only within its space.
2. From the user's history, every task of such an entry: tasks other than the target's, and
   earlier searches of the target task itself (same identity, i.e. the same data content hash):
   what a search learned about this very data is the best prior there is.
3. From the shipped starter history (read after the user's), only tasks whose identity differs
   from every target's. The starter's rows come from the benchmark tables themselves, so a
   benchmark search on one of its tasks would otherwise be handed its own answer (leakage).
4. At most MAX_ROWS_PER_SOURCE rows per source task, newest entries first (a source's kernel
   model is n x n).

Each source task becomes one source of rank-ensemble, labelled by its name (by `name@identity`
when two identities share a name). The chosen rows are written as one Parquet file that
rank-ensemble reads as its `sources` (search/rank_ensemble.py), so the search itself runs the
same code as `--method rank-ensemble --method-option sources=...`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from transfer_automl.errors import StorageError
from transfer_automl.history.store import Entry, HistoryStore, TaskFingerprint, warn

MAX_ROWS_PER_SOURCE = 1000
SOURCE_COLUMNS = ("task", "config", "val_accuracy", "status", "entry", "identity")


@dataclass
class Selection:
    """The rows chosen as sources and where they came from (what settings.json records)."""

    rows: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in SOURCE_COLUMNS})
    used: list[dict[str, Any]] = field(default_factory=list)  # [{"entry", "history", "tasks": {label: rows}}]
    excluded: list[str] = field(default_factory=list)  # "<entry>: <task> (why)"

    @property
    def num_rows(self) -> int:
        return len(self.rows["task"])

    def table(self):
        import pyarrow as pa

        return pa.table({c: self.rows[c] for c in SOURCE_COLUMNS})

    def record(self) -> dict[str, Any]:
        return {"entries": self.used, "excluded": self.excluded, "rows": self.num_rows}


def select_sources(histories: Sequence[HistoryStore], space_fingerprint: str,
                   targets: Sequence[TaskFingerprint]) -> Selection:
    """The rows of the relevant earlier searches in `histories` (the user's first, then the
    starter; read-only ones are the starter's rule 3)."""
    target_ids = {t.identity for t in targets}
    chosen: list[tuple[Entry, TaskFingerprint, Any]] = []  # (entry, task, its rows)
    selection = Selection()
    for history in histories:
        for entry in history.entries():
            if entry.space_fingerprint != space_fingerprint:
                continue
            tasks = []
            for task in entry.tasks:
                if task.identity in target_ids and history.read_only:
                    selection.excluded.append(f"{history.label}/{entry.entry_id}: {task.name} (the target task itself)")
                else:
                    tasks.append(task)
            if not tasks:
                continue
            try:
                summary = entry.summary()
            except (StorageError, OSError, ValueError) as exc:  # pyarrow's errors are ValueErrors or OSErrors
                warn(f"history entry {entry.where} is skipped: {str(exc)[:200]}")
                continue
            columns = summary.column_names
            if not {"task", "config", "val_accuracy"} <= set(columns):
                warn(f"history entry {entry.where} is skipped: its summary lacks task, config or val_accuracy")
                continue
            data = summary.to_pydict()
            for task in tasks:
                idx = [i for i, name in enumerate(data["task"]) if name == task.name]
                chosen.append((entry, task, [(data["config"][i], data["val_accuracy"][i],
                                              data["status"][i] if "status" in data else "ok") for i in idx]))
    names: dict[str, set[str]] = {}
    for _, task, _ in chosen:
        names.setdefault(task.name, set()).add(task.identity)
    taken: dict[str, int] = {}
    for entry, task, rows in chosen:
        label = task.name if len(names[task.name]) == 1 else f"{task.name}@{task.identity[:12]}"
        rows = rows[: max(0, MAX_ROWS_PER_SOURCE - taken.get(label, 0))]
        if not rows:
            continue
        taken[label] = taken.get(label, 0) + len(rows)
        for config, value, status in rows:
            for column, v in zip(SOURCE_COLUMNS, (label, config, value, status, entry.where, task.identity),
                                 strict=True):
                selection.rows[column].append(v)
        used = next((u for u in selection.used if u["entry"] == entry.where), None)
        if used is None:
            used = {"entry": entry.where, "search_id": entry.search_id, "history": entry.history.label, "tasks": {}}
            selection.used.append(used)
        used["tasks"][label] = used["tasks"].get(label, 0) + len(rows)
    return selection

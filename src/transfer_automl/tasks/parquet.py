"""Read a task's Parquet file with the checks every task kind shares."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from transfer_automl.errors import TaskError


def read_task_table(path: str | Path, required: tuple[str, ...], what: str) -> tuple[pa.Table, bytes]:
    """The table and the file's bytes (for content hashes); errors start with `what` (for
    example "task 'mpqa': <path>") and name the file's problem: missing, unreadable, not Parquet,
    lacking a required column, or empty."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TaskError(f"{what}: file {path} does not exist") from None
    except OSError as exc:
        raise TaskError(f"{what}: file {path} is unreadable: {exc}") from None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise TaskError(f"{what}: {path} is not a readable Parquet file ({exc})") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise TaskError(f"{what}: {path} lacks column(s) {missing}; has {table.column_names}")
    if table.num_rows == 0:
        raise TaskError(f"{what}: {path} has no rows")
    return table, data

"""Read a task's Parquet file with the checks every task kind shares.

The file is a local path or an `s3://bucket/key.parquet` uri (read through the ArtifactStore,
so endpoint and credentials come from the AWS environment)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from transfer_automl.errors import StorageError, TaskError
from transfer_automl.limits import check_regular_file, limits
from transfer_automl.storage import is_remote, split_uri


def read_task_table(path: str | Path, required: tuple[str, ...], what: str) -> tuple[pa.Table, bytes]:
    """The table and the file's bytes (for content hashes); errors start with `what` (for
    example "task 'mpqa': <path or uri>") and name the file's problem: missing, unreadable, not Parquet,
    lacking a required column, or empty."""
    bounds = limits()
    if not is_remote(path):
        check_regular_file(path, f"{what}: file", TaskError, bounds.max_task_bytes, "TAML_MAX_TASK_BYTES")
    data = _read_bytes(path, what, bounds.max_task_bytes)
    path = path if is_remote(path) else Path(path)
    try:
        rows = pq.read_metadata(pa.BufferReader(data)).num_rows
        if rows > bounds.max_task_rows:  # refused before the rows are decoded
            raise TaskError(f"{what}: {path} has {rows:,} rows, over the limit of {bounds.max_task_rows:,} "
                            "(TAML_MAX_TASK_ROWS); sample it down or raise the limit")
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise TaskError(f"{what}: {path} is not a readable Parquet file ({exc})") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise TaskError(f"{what}: {path} lacks column(s) {missing}; has {table.column_names}")
    if table.num_rows == 0:
        raise TaskError(f"{what}: {path} has no rows")
    return table, data


def _read_bytes(path: str | Path, what: str, max_bytes: int) -> bytes:
    if is_remote(path):
        try:
            store, key = split_uri(path)
            if not store.exists(key):
                raise TaskError(f"{what}: file {path} does not exist")
            size = store.size(key)  # asked first: the object is read whole into memory
            if size > max_bytes:
                raise TaskError(f"{what}: file {path} is {size:,} bytes, over the limit of {max_bytes:,} "
                                "(TAML_MAX_TASK_BYTES)")
            return store.get_bytes(key)
        except StorageError as exc:
            raise TaskError(f"{what}: file {path} is unreadable: {exc}") from None
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TaskError(f"{what}: file {path} does not exist") from None
    except OSError as exc:
        raise TaskError(f"{what}: file {path} is unreadable: {exc}") from None

"""Append-only trial ledger: a Parquet dataset, one file per committed round.

`<out>/ledger/round-<step>.parquet` holds the trials of controller step <step>. A round file is
written to a temporary name and renamed, so it exists whole or not at all; writing a round that
already exists with the same trial ids is a no-op, so a retried step never doubles a trial.
Read the whole ledger with `pyarrow.dataset.dataset(<out>/ledger)`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from transfer_automl.errors import LedgerError
from transfer_automl.storage import atomic_write

_ROUND_NAME = re.compile(r"round-\d{6,}\.parquet")

SCHEMA = pa.schema([
    ("trial_id", pa.string()),
    ("search_id", pa.string()),
    ("task", pa.string()),
    ("controller_step", pa.int64()),
    ("config", pa.string()),  # JSON of {decision: value}
    ("reward", pa.float64()),
    ("val_accuracy", pa.float64()),
    ("test_accuracy", pa.float64()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("ended_at", pa.timestamp("us", tz="UTC")),
    ("duration_s", pa.float64()),
])


class Ledger:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def round_path(self, step: int) -> Path:
        return self.root / f"round-{step:06d}.parquet"

    def files(self) -> list[Path]:
        """The committed round files; any other Parquet file here is foreign and an error,
        since `pyarrow.dataset.dataset(<ledger dir>)` would read it as part of the ledger."""
        if not self.root.is_dir():
            return []
        files = sorted(self.root.glob("*.parquet"))
        foreign = [f for f in files if not _ROUND_NAME.fullmatch(f.name)]
        if foreign:
            raise LedgerError(f"ledger directory {self.root} holds foreign file(s) {[str(f) for f in foreign]}")
        return files

    def append_round(self, step: int, rows: list[dict[str, Any]]) -> Path:
        """Commit the trials of one controller step; idempotent for the same trial ids."""
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        path = self.round_path(step)
        if path.exists():
            existing = pq.read_table(path, columns=["trial_id"]).column("trial_id").to_pylist()
            if sorted(existing) == sorted(table.column("trial_id").to_pylist()):
                return path
            raise LedgerError(f"ledger file {path} already holds other trials {existing[:3]}...; refusing to overwrite it")
        return atomic_write(path, lambda tmp: pq.write_table(table, tmp))

    def read(self) -> pa.Table:
        """All committed trials, in controller-step order; checks every file's schema."""
        files = self.files()
        if not files:
            return SCHEMA.empty_table()
        for f in files:
            try:
                schema = pq.read_schema(f)
            except (pa.ArrowException, OSError) as exc:
                raise LedgerError(f"ledger file {f} is not readable Parquet: {exc}") from None
            if not schema.equals(SCHEMA, check_metadata=False):
                missing = sorted(set(SCHEMA.names) - set(schema.names))
                raise LedgerError(f"ledger file {f} has a foreign schema (missing {missing or 'none'}, columns {schema.names})")
        table = ds.dataset([str(f) for f in files], format="parquet", schema=SCHEMA).to_table()
        return table.sort_by([("controller_step", "ascending"), ("trial_id", "ascending")])

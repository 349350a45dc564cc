"""Append-only trial ledger: a Parquet dataset, one file per committed round, in any ArtifactStore.

`<out>/ledger/round-<step>.parquet` holds the trials of controller step <step>, in a local
directory or under an `s3://` prefix. A round file is written with `if_absent` (a hard link
locally, a conditional PUT on S3), so it exists whole or not at all and of two racing writers
one wins; writing a round that already exists with the same trial ids is a no-op, so a retried
step never doubles a trial, and other trial ids are refused. Read the whole ledger with
`pyarrow.dataset.dataset(<out>/ledger)` (locally) or `Ledger(uri).read()`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from transfer_automl.errors import LedgerError, StorageError
from transfer_automl.storage import ArtifactStore, LocalStore, get_store

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
# Multi-fidelity search (search/fidelity.py) and the cost model (study/cost.py) added four columns.
# A round file written before them (`LEGACY_SCHEMA`) still loads: its trials were trained at the
# full budget, rung 0, no parent, and no estimate was made.
LEGACY_SCHEMA = SCHEMA
SCHEMA = LEGACY_SCHEMA.append(pa.field("rung", pa.int64())) \
    .append(pa.field("budget", pa.float64())).append(pa.field("parent_trial_id", pa.string())) \
    .append(pa.field("expected_cost_s", pa.float64()))
_SCHEMAS = (SCHEMA, LEGACY_SCHEMA)


@dataclass(frozen=True)
class LedgerRow:
    """One trial as the ledger keeps it (SCHEMA, field for field)."""

    trial_id: str  # "<search_id>/<step>/<k>"
    search_id: str
    task: str
    controller_step: int
    config: str  # JSON of {decision: value}, keys sorted
    reward: float  # what the search is told: f(val_accuracy) for status ok, else 0
    val_accuracy: float
    test_accuracy: float
    status: str  # trial_status: ok, invalid, diverged, failed, timeout
    error: str | None
    started_at: datetime
    ended_at: datetime
    duration_s: float
    rung: int = 0  # the successive-halving rung (0 without --fidelity)
    budget: float | None = None  # the fraction of the child's training budget it trained for; None: all of it
    parent_trial_id: str | None = None  # the trial (rung - 1) whose weights this one continued
    expected_cost_s: float | None = None  # study/cost.py's estimate before it ran (None: nothing measured yet)

    @property
    def index(self) -> int:
        """k, the trial's position in its round."""
        return int(self.trial_id.rsplit("/", 1)[-1])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        """JSON values: timestamps as ISO strings (a pipeline step's output, a result file). The
        multi-fidelity fields are left out where unset (a pipeline's outputs take no nulls)."""
        out = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}
        if self.budget is None:
            del out["rung"]
        return {k: v for k, v in out.items() if k not in _FIDELITY_FIELDS or v is not None}

    @classmethod
    def from_dict(cls, row: dict[str, Any], where: str = "row") -> LedgerRow:
        """From a ledger row or its JSON; refuses a row that lacks a field (naming it and `where`).
        A row of a ledger written before multi-fidelity search (no rung, budget, parent, expected
        cost) is a full-budget trial at rung 0."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in row and n not in _FIDELITY_FIELDS]
        if missing:
            raise LedgerError(f"{where}: a trial row lacks {missing}")
        values = {n: row[n] for n in names if n in row}
        values["rung"] = int(values.get("rung") or 0)
        for key in ("started_at", "ended_at"):
            if isinstance(values[key], str):
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)


class Ledger:
    """The ledger in `root`: a local directory, an `s3://` uri, or a store (e.g. `store.sub("ledger")`).

    Locations (`round_path`, `files`, `append_round`'s result) are `Path`s for a local ledger
    and uri strings otherwise."""

    def __init__(self, root: str | Path | ArtifactStore):
        self.store = root if isinstance(root, ArtifactStore) else get_store(root)
        self.root: Path | str = self.store.root if isinstance(self.store, LocalStore) else self.store.uri

    @staticmethod
    def round_name(step: int) -> str:
        return f"round-{step:06d}.parquet"

    def _location(self, key: str) -> Path | str:
        return self.store.path(key) if isinstance(self.store, LocalStore) else self.store.join(key)

    def round_path(self, step: int) -> Path | str:
        return self._location(self.round_name(step))

    def _keys(self) -> list[str]:
        """The committed round files' keys; any other Parquet file here is foreign and an error,
        since `pyarrow.dataset.dataset(<ledger dir>)` would read it as part of the ledger."""
        if isinstance(self.store, LocalStore) and not self.store.root.is_dir():
            return []
        keys = [k for k in self.store.list() if "/" not in k and k.endswith(".parquet")]
        foreign = [k for k in keys if not _ROUND_NAME.fullmatch(k)]
        if foreign:
            raise LedgerError(f"ledger directory {self.root} holds foreign file(s) {[str(self._location(k)) for k in foreign]}")
        return keys

    def files(self) -> list[Path | str]:
        return [self._location(k) for k in self._keys()]

    def append_round(self, step: int, rows: list[dict[str, Any] | LedgerRow]) -> Path | str:
        """Commit the trials of one controller step; idempotent for the same trial ids."""
        rows = [r.to_dict() if isinstance(r, LedgerRow) else r for r in rows]
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        key = self.round_name(step)
        if not self.store.exists(key):
            try:
                self.store.write_parquet(key, table, if_absent=True)
                return self._location(key)
            except StorageError:
                if not self.store.exists(key):
                    raise
                # another writer (a retried step) committed this round first: compare below
        existing = self._read_key(key, columns=["trial_id"]).column("trial_id").to_pylist()
        if sorted(existing) == sorted(table.column("trial_id").to_pylist()):
            return self._location(key)
        raise LedgerError(f"ledger file {self._location(key)} already holds other trials {existing[:3]}...; "
                          "refusing to overwrite it")

    def read_round(self, step: int) -> list[dict[str, Any]] | None:
        """The committed rows of one step, by trial id; None if the step is not committed."""
        key = self.round_name(step)
        if not self.store.exists(key):
            return None
        return sorted(self._read_key(key).to_pylist(), key=lambda r: r["trial_id"])

    def rounds(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """(file name, rows by trial id) for every committed round, in step order."""
        return [(k, sorted(self._read_key(k).to_pylist(), key=lambda r: r["trial_id"])) for k in self._keys()]

    def check(self, search_id: str) -> None:
        """Every round file holds only this search's trials, of its own step, each once; a foreign
        or duplicated row is refused with the file named (the ledger is never changed here)."""
        seen: dict[str, str] = {}
        for key in self._keys():
            step = int(key[len("round-"):-len(".parquet")])
            table = self._read_key(key, columns=["trial_id", "search_id", "controller_step"])
            where = f"ledger file {self._location(key)}"
            for trial_id, owner, row_step in zip(*(table.column(c).to_pylist() for c in table.column_names),
                                                 strict=True):
                if owner != search_id or not _is_trial_id(trial_id, search_id, step):
                    raise LedgerError(f"{where} holds trial {trial_id!r} of search {owner!r}, not a trial of step "
                                      f"{step} of search {search_id!r}; `taml runs repair` sets it aside")
                if row_step != step:
                    raise LedgerError(f"{where} holds trial {trial_id!r} of step {row_step}, not {step}; "
                                      "`taml runs repair` sets it aside")
                if trial_id in seen:
                    raise LedgerError(f"{where} holds trial {trial_id!r} twice"
                                      + ("" if seen[trial_id] == key else f" (also in {self._location(seen[trial_id])})")
                                      + "; `taml runs repair` keeps it once")
                seen[trial_id] = key

    def repair(self, search_id: str, quarantine: ArtifactStore) -> list[tuple[str, str]]:
        """Set aside what `check` and `read` refuse, so the search can resume: a foreign, unreadable
        or misnamed file is moved into `quarantine` whole; a round file with foreign, misplaced or
        doubled rows is copied there and rewritten with only its own rows, each once. Nothing is
        deleted before its copy is in quarantine. Returns (file, what was done) per file touched."""
        done: list[tuple[str, str]] = []
        seen: set[str] = set()

        def set_aside(key: str) -> None:
            quarantine.put_bytes(key, self.store.get_bytes(key))

        for key in sorted(k for k in self.store.list() if "/" not in k and not k.startswith((".", "_"))):
            why = self._unusable(key)
            if why:
                set_aside(key)
                self.store.delete(key)
                done.append((key, f"moved to quarantine: {why}"))
                continue
            step = int(key[len("round-"):-len(".parquet")])
            rows, dropped = [], Counter()
            for row in self._read_key(key).to_pylist():
                if row["search_id"] != search_id or not _is_trial_id(row["trial_id"], search_id, step):
                    dropped["of another search or step"] += 1
                elif row["controller_step"] != step:
                    dropped["of another step"] += 1
                elif row["trial_id"] in seen:
                    dropped["doubled"] += 1
                else:
                    seen.add(row["trial_id"])
                    rows.append(row)
            if not dropped:
                continue
            set_aside(key)
            what = ", ".join(f"{n} row(s) {why}" for why, n in sorted(dropped.items()))
            if rows:
                self.store.write_parquet(key, pa.Table.from_pylist(rows, schema=SCHEMA))
                done.append((key, f"rewritten with its {len(rows)} own row(s), the original in quarantine: {what}"))
            else:
                self.store.delete(key)
                done.append((key, f"moved to quarantine: {what}"))
        return done

    def _unusable(self, key: str) -> str:
        """Why a file in the ledger directory cannot be part of this ledger ("" when it can)."""
        if not _ROUND_NAME.fullmatch(key):
            return "not a round file (round-<step>.parquet)"
        fs, path = self.store.arrow_location(key)
        try:
            schema = pq.read_schema(path, filesystem=fs)
        except (pa.ArrowException, OSError):
            return "not readable Parquet"
        if not _known_schema(schema):
            return "a foreign schema"
        return ""

    def _read_key(self, key: str, columns: list[str] | None = None) -> pa.Table:
        fs, path = self.store.arrow_location(key)
        try:
            return pq.read_table(path, filesystem=fs, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise LedgerError(f"ledger file {self._location(key)} is not readable Parquet: {str(exc)[:300]}") from None

    def read(self) -> pa.Table:
        """All committed trials, in controller-step order; checks every file's schema."""
        keys = self._keys()
        if not keys:
            return SCHEMA.empty_table()
        paths = []
        fs = None
        for key in keys:
            fs, path = self.store.arrow_location(key)
            paths.append(path)
            try:
                schema = pq.read_schema(path, filesystem=fs)
            except (pa.ArrowException, OSError) as exc:
                raise LedgerError(f"ledger file {self._location(key)} is not readable Parquet: {exc}") from None
            if not _known_schema(schema):  # a legacy file's missing columns read as nulls
                missing = sorted(set(SCHEMA.names) - set(schema.names))
                raise LedgerError(f"ledger file {self._location(key)} has a foreign schema "
                                  f"(missing {missing or 'none'}, columns {schema.names})")
        table = ds.dataset(paths, filesystem=fs, format="parquet", schema=SCHEMA).to_table()
        return table.sort_by([("controller_step", "ascending"), ("trial_id", "ascending")])


_FIDELITY_FIELDS = ("rung", "budget", "parent_trial_id", "expected_cost_s")


def _known_schema(schema: pa.Schema) -> bool:
    return any(schema.equals(s, check_metadata=False) for s in _SCHEMAS)


def _is_trial_id(trial_id: Any, search_id: str, step: int) -> bool:
    """"<search_id>/<step, 6 digits>/<k, 3 or more digits>", as `Search.ask` names trials."""
    if not isinstance(trial_id, str):
        return False
    parts = trial_id.split("/")
    return (len(parts) >= 3 and "/".join(parts[:-2]) == search_id and parts[-2] == f"{step:06d}"
            and parts[-1].isdigit() and len(parts[-1]) >= 3)

"""`taml runs repair DIR`: set aside what keeps a search from resuming, never deleting it.

A ledger that `--resume` refuses (another search's round file copied in, a row doubled, a file
that is not Parquet) is repaired by the ledger itself (`Ledger.repair`); this module finds the
search's id, takes the directory's lease (no runner may write meanwhile) and puts what it sets
aside under `DIR/quarantine/<UTC time>/ledger/`, where the user can inspect it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from transfer_automl.errors import ConfigError, TamlError
from transfer_automl.study.lease import Lease
from transfer_automl.study.search_dir import SETTINGS_NAME, SearchDir

QUARANTINE = "quarantine"


@dataclass
class RepairReport:
    search_id: str
    quarantine: str  # where the set-aside files are (nothing there when `actions` is empty)
    actions: list[tuple[str, str]] = field(default_factory=list)  # (ledger file, what was done)

    def lines(self) -> list[str]:
        if not self.actions:
            return [f"search {self.search_id}: nothing to repair"]
        return [f"search {self.search_id}: set aside under {self.quarantine}",
                *(f"  ledger/{name}: {what}" for name, what in self.actions)]


def repair_search(location: str | Path | SearchDir) -> RepairReport:
    directory = SearchDir.of(location)
    search_id = _search_id(directory)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    quarantine = f"{QUARANTINE}/{stamp}/ledger"
    with Lease(directory):
        actions = directory.ledger.repair(search_id, directory.store.sub(quarantine))
    return RepairReport(search_id, str(directory.where(quarantine)), actions)


def _search_id(directory: SearchDir) -> str:
    """The id the ledger's rows must carry: settings.json's, else the checkpoint's."""
    problems = []
    if directory.store.exists(SETTINGS_NAME):
        try:
            raw = directory.read_json(SETTINGS_NAME)
            if isinstance(raw, dict) and isinstance(raw.get("search_id"), str) and raw["search_id"]:
                return raw["search_id"]
            problems.append(f"{SETTINGS_NAME} names no search_id")
        except (TamlError, ValueError) as exc:
            problems.append(str(exc))
    if directory.has_checkpoint():
        try:
            return str(directory.load_checkpoint()["search_id"])
        except (TamlError, KeyError) as exc:
            problems.append(str(exc))
    if not problems:
        raise ConfigError(f"runs repair: {directory} holds no search ({SETTINGS_NAME} and checkpoint.pt not found)")
    raise ConfigError(f"runs repair: cannot tell which search {directory} holds: {'; '.join(problems)}")

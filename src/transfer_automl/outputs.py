"""Where a command may write: never over a search's own files, over other files only with --force.

A search directory is recognized by its own files (settings.json, checkpoint.pt or ledger/). The
entries listed in SEARCH_OWNED belong to it: replacing one (a report written to
`DIR/checkpoint.pt`) would make the search impossible to resume, so no flag allows it. Any other
existing file is replaced only when the user passes --force. Checks run before any work, so a
refused command has written nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from transfer_automl.errors import ConfigError

# The entries of a search directory that belong to the search (study/search_dir.py's layout, the
# lease, the default MLflow store and what `taml runs repair` sets aside).
SEARCH_OWNED = frozenset({"settings.json", "checkpoint.pt", "space.yaml", "ledger", "rounds", "cache", "lease.json",
                          "tracking.json", "mlflow.db", "mlartifacts", "mlruns", "quarantine"})


def is_search_dir(directory: Path) -> bool:
    """True when `directory` holds a search's own files."""
    return (directory / "settings.json").is_file() or (directory / "checkpoint.pt").is_file() or \
        (directory / "ledger").is_dir()


def search_owning(path: str | Path) -> tuple[Path, str] | None:
    """(search directory, its entry) when `path` is, or is inside, a file that belongs to a search."""
    path = Path(os.path.abspath(path))
    for directory in path.parents:
        relative = path.relative_to(directory)
        if relative.parts and relative.parts[0] in SEARCH_OWNED and is_search_dir(directory):
            return directory, relative.parts[0]
    return None


def _refuse_search_owned(path: Path, flag: str) -> None:
    owner = search_owning(path)
    if owner is not None:
        directory, entry = owner
        raise ConfigError(f"{flag} {path}: {entry} belongs to the search in {directory}; no command writes over a "
                          "search's own files, choose another path")


def _check_writable_parent(path: Path, flag: str) -> None:
    """The nearest existing ancestor of `path` must be a writable directory."""
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {parent} is not writable")


def check_output_file(path: str | Path, force: bool = False, flag: str = "--out") -> Path:
    """Refuse, before any work, to write the file `path` where it would clobber something."""
    path = Path(path)
    _refuse_search_owned(path, flag)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a directory; give a file name, e.g. {path / 'report.html'}")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise ConfigError(f"{flag} {path} exists and is not a regular file")
        if not force:
            raise ConfigError(f"{flag} {path} exists; pass --force to replace it")
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{flag} {path} is not writable")
    _check_writable_parent(path, flag)
    return path


def check_output_dir(directory: str | Path, names: Iterable[str], force: bool = False, flag: str = "--out") -> Path:
    """Refuse, before any work, to write `names` into `directory` where that would clobber something.

    `names` are the files the command writes (glob patterns allowed, e.g. `regret_*.png`).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{flag} {directory} is a file, not a directory")
    _refuse_search_owned(directory, flag)
    for name in names:
        if name.split("/")[0] in SEARCH_OWNED and is_search_dir(directory):
            raise ConfigError(f"{flag} {directory} holds a search, whose {name} this command would replace; "
                              "choose another directory")
        existing = sorted(directory.glob(name)) if directory.is_dir() else []
        if existing and not force:
            raise ConfigError(f"{flag} {directory} already has {existing[0].name}; pass --force to replace it")
    if directory.is_dir():
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {directory} is not writable")
    else:
        _check_writable_parent(directory, flag)
    return directory

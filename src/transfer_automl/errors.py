"""One root error for everything a user can get wrong.

Each subclass also inherits the builtin it refines, so callers that only know Python's
exceptions (ValueError, FileNotFoundError) still catch it. The CLI turns any TamlError into one
line on stderr and exit code 2.
"""

from __future__ import annotations


class TamlError(Exception):
    """Root of all user-facing errors; the message names the field, file or value."""


class SearchSpaceError(TamlError, ValueError):
    """A search-space file or a configuration does not fit the space."""


class TaskError(TamlError, ValueError):
    """A task name does not resolve, or a task file is unreadable or malformed."""


class CheckpointError(TamlError, ValueError):
    """A checkpoint is unreadable, of another format version, or for another space or tasks."""


class ConfigError(TamlError, ValueError):
    """A setting is out of range or conflicts with another setting."""


class LedgerError(TamlError, ValueError):
    """A ledger directory holds files of another schema or another search."""


class StorageError(TamlError, OSError):
    """An artifact-store key is missing, already exists (if_absent), corrupt, or unreachable."""


class PredictionError(TamlError, ValueError):
    """A model or input file `taml predict` cannot use: unknown column, empty file, wrong modality."""

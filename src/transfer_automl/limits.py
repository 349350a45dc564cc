"""Limits on untrusted input: files a user (or anyone who can write to the data directory) gives.

An 843-byte YAML file of nested aliases can expand to gigabytes, one 50 MB text can take minutes
and gigabytes to tokenize, and a FIFO given as a file blocks a read forever. Each limit is a
setting read from the environment, so the command line, the pipeline pods and the benchmarks
apply the same ones; the defaults are far above what a real space or task needs.

    TAML_MAX_SPACE_BYTES     1048576     a search-space file's size
    TAML_MAX_YAML_ALIASES    100         aliases (*name) in a search-space file
    TAML_MAX_NESTING         32          nesting depth of a search-space file
    TAML_MAX_TASK_BYTES      4294967296  a task file's size
    TAML_MAX_TASK_ROWS       10000000    a task file's rows
    TAML_MAX_TEXT_CHARS      100000      characters kept of one text (longer ones are truncated, with a warning)
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, fields
from pathlib import Path

from transfer_automl.errors import ConfigError, TamlError


@dataclass(frozen=True)
class InputLimits:
    max_space_bytes: int = 1 << 20
    max_yaml_aliases: int = 100
    max_nesting: int = 32
    max_task_bytes: int = 4 << 30
    max_task_rows: int = 10_000_000
    max_text_chars: int = 100_000

    @classmethod
    def from_env(cls) -> InputLimits:
        values = {}
        for f in fields(cls):
            name = "TAML_" + f.name.upper()
            raw = os.environ.get(name)
            if raw is None:
                continue
            try:
                values[f.name] = int(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
            if values[f.name] < 1:
                raise ConfigError(f"{name}={raw!r}: must be at least 1")
        return cls(**values)


def limits() -> InputLimits:
    """The limits in force (the environment is read each time: tests and pods may set it)."""
    return InputLimits.from_env()


def check_regular_file(path: str | Path, what: str, error: type[TamlError], max_bytes: int | None = None,
                       limit_name: str = "") -> None:
    """Refuse, before opening it, a path that is not a regular file (a FIFO or device would block
    or never end) or is larger than `max_bytes`. A missing file is left to the reader's message."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error(f"{what} {path} is unreadable: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise error(f"{what} {path} is {info.st_size:,} bytes, over the limit of {max_bytes:,} ({limit_name})")

"""Resolve task names to Parquet files.

A name resolves to `<data dir>/<name>.parquet`, where the data dir is `--data-dir`, else
`$TAML_DATA_DIR`, else `../shared/data/text` when it exists; failing all of those, to the small
samples shipped inside the package (`tasks/samples/`), so the default run works anywhere.
A value ending in `.parquet` is taken as a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from transfer_automl.errors import TaskError
from transfer_automl.tasks.text import TextTask, load_text_task

SAMPLES_DIR = Path(__file__).parent / "samples"
DEFAULT_SHARED_DIR = Path("../shared/data/text")


def data_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("TAML_DATA_DIR"):
        return Path(os.environ["TAML_DATA_DIR"])
    if DEFAULT_SHARED_DIR.is_dir():
        return DEFAULT_SHARED_DIR
    return SAMPLES_DIR


def available_tasks(directory: str | Path | None = None) -> list[str]:
    root = data_dir(directory)
    return sorted(p.stem for p in root.glob("*.parquet")) if root.is_dir() else []


def resolve_task(name: str, directory: str | Path | None = None) -> Path | str:
    if name.endswith(".parquet"):
        return name if name.startswith("s3://") else Path(name)  # an s3:// uri is read through the store
    root = data_dir(directory)
    path = root / f"{name}.parquet"
    if path.is_file():
        return path
    known = available_tasks(directory)
    raise TaskError(f"unknown task {name!r}: no {path}; tasks in {root}: {', '.join(known) or 'none'}")


def load_task(name: str, directory: str | Path | None = None) -> TextTask:
    path = resolve_task(name, directory)
    return load_text_task(path, name=Path(name).stem if name.endswith(".parquet") else name)

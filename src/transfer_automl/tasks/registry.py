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


def absolute_location(location: str | Path) -> str:
    """A data location as a search records it: an absolute path, or a URI as given."""
    text = str(location)
    return text if "://" in text else str(Path(text).resolve())


def data_record(tasks, directory: str | Path | None = None) -> dict:
    """What a search read, as settings.json (`_data`) and its MLflow run record it: the data
    directory (absolute path or URI), each task's file and content hash (`content_hash`: SHA-256 of
    the file's bytes, 16 hex digits), and whether it was the package's bundled samples.
    `tasks`: loaded tasks (`.name`, `.source`, `.content_hash`)."""
    root = data_dir(directory)
    files = {t.name: {"path": absolute_location(t.source), "content_hash": t.content_hash} for t in tasks}
    bundled = any(Path(f["path"]).parent == SAMPLES_DIR.resolve() for f in files.values()
                  if "://" not in f["path"])
    return {"data_dir": absolute_location(root), "files": files, "bundled_samples": bundled}

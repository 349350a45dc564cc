"""Resolve task names to Parquet files.

A name resolves to `<data dir>/<name>.parquet`, where the data dir is `--data-dir`, else
`$TAML_DATA_DIR`, else `../shared/data/text` when it exists; failing all of those, to the small
samples shipped inside the package (`tasks/samples/`), so the default run works anywhere.
A value ending in `.parquet` is taken as a path. A data dir may be an `s3://bucket/prefix` uri: it
stays a string (a `Path` would collapse `s3://` to `s3:/`) and its files are read through the
ArtifactStore (boto3, endpoint and keys from the environment).
"""

from __future__ import annotations

import os
from pathlib import Path

from transfer_automl.errors import StorageError, TaskError
from transfer_automl.storage import get_store, is_remote
from transfer_automl.tasks.text import TextTask, load_text_task

SAMPLES_DIR = Path(__file__).parent / "samples"
DEFAULT_SHARED_DIR = Path("../shared/data/text")


def data_dir(explicit: str | Path | None = None) -> Path | str:
    """The data directory: a Path, or an `s3://` uri kept as a string (without a trailing '/')."""
    if explicit:
        return _location(explicit)
    if os.environ.get("TAML_DATA_DIR"):
        return _location(os.environ["TAML_DATA_DIR"])
    if DEFAULT_SHARED_DIR.is_dir():
        return DEFAULT_SHARED_DIR
    return SAMPLES_DIR


def _location(value: str | Path) -> Path | str:
    return value.rstrip("/") if is_remote(value) else Path(value)


def is_samples(directory: str | Path | None = None) -> bool:
    """Whether task names resolve to the samples shipped in the package (1,000 rows each)."""
    root = data_dir(directory)
    return not is_remote(root) and Path(root).resolve() == SAMPLES_DIR.resolve()


def available_tasks(directory: str | Path | None = None) -> list[str]:
    root = data_dir(directory)
    if is_remote(root):
        try:
            keys = get_store(root).list()
        except StorageError:
            return []
        return sorted(k[: -len(".parquet")] for k in keys if k.endswith(".parquet") and "/" not in k)
    return sorted(p.stem for p in root.glob("*.parquet")) if root.is_dir() else []


def resolve_task(name: str, directory: str | Path | None = None) -> Path | str:
    if name.endswith(".parquet"):
        return name if is_remote(name) else Path(name)  # an s3:// uri is read through the store
    root = data_dir(directory)
    if is_remote(root):
        uri = f"{root}/{name}.parquet"
        try:
            if get_store(root).exists(f"{name}.parquet"):
                return uri
        except StorageError as exc:
            raise TaskError(f"task {name!r}: {uri} is unreadable: {exc}") from None
        path: Path | str = uri
    else:
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
    the file's bytes, 16 hex digits; `truncated_texts` when texts were cut to the length limit), and
    whether it was the package's bundled samples.
    `tasks`: loaded tasks (`.name`, `.source`, `.content_hash`)."""
    root = data_dir(directory)
    files = {t.name: {"path": absolute_location(t.source), "content_hash": t.content_hash,
                      # texts cut to TAML_MAX_TEXT_CHARS (transfer_automl.limits); recorded when any were
                      **({"truncated_texts": t.truncated_texts} if getattr(t, "truncated_texts", 0) else {})}
             for t in tasks}
    bundled = any(Path(f["path"]).parent == SAMPLES_DIR.resolve() for f in files.values()
                  if "://" not in f["path"])
    return {"data_dir": absolute_location(root), "files": files, "bundled_samples": bundled}

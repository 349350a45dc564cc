"""Artifact storage: `get_store(uri)` gives an `ArtifactStore` for a local path or `s3://` uri.

`LocalStore` (a directory) and `S3Store` (boto3; imported on first use, so a light command does
not pay for boto3) share one interface; see `storage.base` for the contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from transfer_automl.errors import StorageError
from transfer_automl.storage.base import ArtifactStore
from transfer_automl.storage.local import LocalStore, atomic_write

if TYPE_CHECKING:
    from transfer_automl.storage.s3 import S3Store

__all__ = ["ArtifactStore", "LocalStore", "S3Store", "StorageError", "atomic_write", "get_store", "is_remote",
           "split_uri"]


def get_store(uri: str | Path) -> ArtifactStore:
    """A local path or `file://` uri -> LocalStore; `s3://bucket[/prefix]` -> S3Store.

    Endpoints and credentials for S3 come from the AWS environment, never from the uri."""
    if isinstance(uri, Path):
        return LocalStore(uri)
    if not isinstance(uri, str) or not uri:
        raise StorageError(f"store uri {uri!r} is empty or not a string")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        from transfer_automl.storage.s3 import S3Store

        return S3Store(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(f"store uri {uri!r} names a remote host; file:// uris must be local")
        if not parsed.path:
            raise StorageError(f"store uri {uri!r} names no directory")
        return LocalStore(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):  # C:\ on Windows
        return LocalStore(uri)
    raise StorageError(f"store uri {uri!r} has unsupported scheme {parsed.scheme!r} (use a path, file:// or s3://)")


def is_remote(uri: str | Path) -> bool:
    """Whether `uri` names an object store (s3://) rather than a local path or file:// uri."""
    return isinstance(uri, str) and urlparse(uri).scheme == "s3"


def split_uri(uri: str | Path) -> tuple[ArtifactStore, str]:
    """The store of `uri`'s parent "directory" and the last part as its key:
    "s3://b/p/checkpoint.pt" -> (S3Store("s3://b/p"), "checkpoint.pt"), "runs/x.pt" -> (LocalStore("runs"), "x.pt")."""
    if is_remote(uri):
        parsed = urlparse(str(uri))
        parent, _, name = parsed.path.strip("/").rpartition("/")
        if not name:
            raise StorageError(f"uri {uri!r} names a bucket, not an object")
        return get_store(f"s3://{parsed.netloc}/{parent}".rstrip("/")), name
    if isinstance(uri, str) and uri.startswith("file:"):
        uri = get_store(uri).uri
    path = Path(uri)
    if not path.name:
        raise StorageError(f"path {str(uri)!r} names no file")
    return LocalStore(path.parent), path.name


def __getattr__(name: str) -> Any:
    if name == "S3Store":
        from transfer_automl.storage.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

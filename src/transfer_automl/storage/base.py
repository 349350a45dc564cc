"""The ArtifactStore interface: a flat namespace of keys under one root (a directory or an S3 prefix).

Keys are relative, `/`-separated paths ("ledger/round-000003.parquet"); `join(*parts)` gives the
absolute uri of a key, for messages and for tools that want a uri. Every write is atomic: a reader
sees the old object or the new one, never part of one. `if_absent=True` makes a write refuse an
existing key (race-free: `os.link` locally, a conditional PUT on S3), which is how a retried step
avoids doubling a ledger file. Every failure is a `StorageError` that names the key.

Checksummed objects (`put_with_checksum` / `get_with_checksum`, used for checkpoints) carry their
SHA-256 *inside* the object, in a one-line header, on every store:

    b"TAMLSHA256 <64 hex digits>\\n" + payload

so object and checksum are written by one atomic write and can never disagree after a crash (a
sidecar file or a second request could). Such an object is read back with `get_with_checksum`;
`get_bytes` returns the framed bytes unchanged.
"""

from __future__ import annotations

import abc
import hashlib
import os
import tempfile
from typing import TYPE_CHECKING

from transfer_automl.errors import StorageError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

CHECKSUM_MAGIC = b"TAMLSHA256 "
_HEADER_LEN = len(CHECKSUM_MAGIC) + 64 + 1


def check_key(key: str, *, prefix: bool = False) -> str:
    """Return `key` if it is a relative `/`-separated key that stays under the root.

    With `prefix=True` the empty string and a trailing `/` are allowed (a listing prefix)."""
    if not isinstance(key, str):
        raise StorageError(f"storage key {key!r} is not a string")
    if prefix and key == "":
        return key
    parts = key.split("/")
    if prefix and parts[-1] == "":
        parts = parts[:-1]
    if key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise StorageError(
            f"storage key {key!r} is not a relative '/'-separated key under the store root "
            "(no leading '/', no empty, '.' or '..' parts, no backslashes)"
        )
    return key


class ArtifactStore(abc.ABC):
    """Artifacts under one root. Implementations: `LocalStore` (a directory), `S3Store` (s3://)."""

    #: Keys per listing request (S3 `MaxKeys`); the local store lists a directory at once.
    page_size: int = 1000

    def __init__(self, uri: str):
        self.uri = uri

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    def join(self, *parts: str) -> str:
        """The absolute uri of the key made of `parts` ("a", "b/c" -> "<root>/a/b/c")."""
        key = check_key("/".join(p.strip("/") for p in parts if p.strip("/")))
        return f"{self.uri.rstrip('/')}/{key}"

    # -- bytes -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        """Write `data` to `key` atomically; with `if_absent`, refuse (StorageError) an existing key."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; StorageError naming the key if it does not exist."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int:
        """The object's size in bytes, without reading it (StorageError if it does not exist)."""
        return len(self.get_bytes(key))

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys (relative to the root) that start with `prefix`; no in-flight temporaries."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error (as on S3)."""

    # -- large files -----------------------------------------------------------------------------
    @abc.abstractmethod
    def put_file(self, key: str, local_path: str | os.PathLike[str], if_absent: bool = False) -> None:
        """Upload a local file (streamed; S3 multipart above `multipart_threshold`)."""

    @abc.abstractmethod
    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> None:
        """Download `key` to a local file; the local file appears whole or not at all."""

    # -- Parquet ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def arrow_location(self, key: str) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and path for `key` (or a prefix), e.g. for `pyarrow.dataset.dataset`."""

    def write_parquet(self, key: str, table: pa.Table, if_absent: bool = False) -> None:
        """Write `table` as one Parquet file at `key`, atomically (a temp file, then `put_file`)."""
        import pyarrow.parquet as pq

        fd, tmp = tempfile.mkstemp(prefix="taml-", suffix=".parquet")
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            self.put_file(key, tmp, if_absent=if_absent)
        finally:
            os.unlink(tmp)

    def read_parquet(self, key: str, columns: list[str] | None = None) -> pa.Table:
        """Read the Parquet file at `key` through pyarrow (local file system or S3FileSystem)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        check_key(key)
        fs, path = self.arrow_location(key)
        try:
            return pq.read_table(path, filesystem=fs, columns=columns)
        except FileNotFoundError:
            raise StorageError(f"{self.join(key)} does not exist") from None
        except (pa.ArrowException, OSError) as exc:
            if not self.exists(key):
                raise StorageError(f"{self.join(key)} does not exist") from None
            raise StorageError(f"{self.join(key)} is not readable Parquet: {str(exc)[:300]}") from None

    # -- checksummed objects ---------------------------------------------------------------------
    def put_with_checksum(self, key: str, data: bytes, if_absent: bool = False) -> str:
        """Write `data` framed with its SHA-256 (see the module docstring); returns the hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        self.put_bytes(key, CHECKSUM_MAGIC + digest.encode() + b"\n" + data, if_absent=if_absent)
        return digest

    def get_with_checksum(self, key: str) -> bytes:
        """The payload written by `put_with_checksum`; StorageError if the SHA-256 does not match."""
        return unframe_checksum(self.get_bytes(key), self.join(key))

    # -- views -----------------------------------------------------------------------------------
    def sub(self, prefix: str) -> ArtifactStore:
        """The store of the keys under `prefix` (a "directory"), sharing this store's clients."""
        return SubStore(self, check_key(prefix.strip("/")))


def has_checksum_header(raw: bytes) -> bool:
    """Whether `raw` starts with the header `put_with_checksum` writes."""
    return raw.startswith(CHECKSUM_MAGIC) and len(raw) >= _HEADER_LEN and raw[_HEADER_LEN - 1:_HEADER_LEN] == b"\n"


def unframe_checksum(raw: bytes, where: str) -> bytes:
    """The payload of framed bytes (see the module docstring); StorageError naming `where` if the
    header is missing or the SHA-256 does not match (a truncated or altered object)."""
    if not has_checksum_header(raw):
        raise StorageError(f"{where} has no SHA-256 header; it was not written by put_with_checksum")
    expected = raw[len(CHECKSUM_MAGIC):_HEADER_LEN - 1].decode("ascii", "replace")
    payload = raw[_HEADER_LEN:]
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        raise StorageError(
            f"{where} fails its checksum: stored SHA-256 {expected[:16]}..., "
            f"content {actual[:16]}... ({len(payload)} bytes); the object is corrupt or was altered"
        )
    return payload


class SubStore(ArtifactStore):
    """The keys of `parent` under `prefix`, as a store of their own (same clients, same root)."""

    def __init__(self, parent: ArtifactStore, prefix: str):
        self.parent = parent
        self.prefix = prefix
        super().__init__(parent.join(prefix))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}"

    def put_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        self.parent.put_bytes(self._key(key), data, if_absent=if_absent)

    def get_bytes(self, key: str) -> bytes:
        return self.parent.get_bytes(self._key(key))

    def exists(self, key: str) -> bool:
        return self.parent.exists(self._key(key))

    def size(self, key: str) -> int:
        return self.parent.size(self._key(key))

    def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, prefix=True)
        start = len(self.prefix) + 1
        return [k[start:] for k in self.parent.list(f"{self.prefix}/{prefix}")]

    def delete(self, key: str) -> None:
        self.parent.delete(self._key(key))

    def put_file(self, key: str, local_path: str | os.PathLike[str], if_absent: bool = False) -> None:
        self.parent.put_file(self._key(key), local_path, if_absent=if_absent)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> None:
        self.parent.get_file(self._key(key), local_path)

    def write_parquet(self, key: str, table: pa.Table, if_absent: bool = False) -> None:
        self.parent.write_parquet(self._key(key), table, if_absent=if_absent)

    def arrow_location(self, key: str) -> tuple[pafs.FileSystem, str]:
        check_key(key, prefix=True)
        return self.parent.arrow_location(f"{self.prefix}/{key}".rstrip("/"))

    def sub(self, prefix: str) -> ArtifactStore:
        return self.parent.sub(f"{self.prefix}/{check_key(prefix.strip('/'))}")

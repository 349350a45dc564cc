"""Local artifacts: `atomic_write` (a file exists whole or not at all) and `LocalStore`."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from transfer_automl.errors import StorageError
from transfer_automl.storage.base import ArtifactStore, check_key

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs


def new_file_mode() -> int:
    """The mode `open()` gives a new file: 0o666 less the process's umask (0o644 under umask 022).

    Read from /proc/self/status where Linux has it: `os.umask` can only be read by setting it, and
    for that instant another thread's new files would get umask 0."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return 0o666 & ~mask


def _temporary_beside(path: Path, suffix: str) -> str:
    """A new empty file beside `path`, with the mode a plain `open(path, "w")` would give it:
    mkstemp makes it 0600, which the rename would carry to the user's output."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        os.fchmod(fd, new_file_mode())
    finally:
        os.close(fd)
    return tmp


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it into place.

    The rename is atomic on POSIX, so readers and a crash at any moment see the old file or the
    new one, never half of one; if `write` fails, the temporary file is removed. The file gets
    the user's umask, as any file the user's programs create (no output of taml holds a secret).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_beside(path, ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


_TMP_SUFFIX = ".taml-partial"


def _write_bytes(path: str, data: bytes) -> None:
    """Write `data` to `path` (a temporary file); module-level so tests can break it midway."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class LocalStore(ArtifactStore):
    """Artifacts in a local directory. Every write goes to `.<name>.<random>.taml-partial` beside
    the target and is renamed into place (`os.replace`), or, with `if_absent`, hard-linked into
    place (`os.link` fails if the name exists, so two racing writers cannot both win) and then
    unlinked. Listings skip those temporaries. A key is a file under the root; note that unlike
    S3, "a" and "a/b" cannot both be keys."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().absolute()
        super().__init__(str(self.root))

    def path(self, key: str) -> Path:
        """The local file that holds `key`."""
        return self.root / check_key(key)

    def _write(self, key: str, write: Callable[[str], None], if_absent: bool) -> None:
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temporary_beside(path, _TMP_SUFFIX)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            write(tmp)
            try:
                if if_absent:
                    os.link(tmp, path)  # atomic and exclusive: fails if `path` exists
                else:
                    os.replace(tmp, path)
            except FileExistsError:
                raise StorageError(f"{path} already exists; refusing to overwrite it (if_absent)") from None
            except OSError as exc:  # e.g. a file system without hard links, or `path` is a directory
                raise StorageError(f"cannot commit {path}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def put_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        self._write(key, lambda tmp: _write_bytes(tmp, bytes(data)), if_absent)

    def get_bytes(self, key: str) -> bytes:
        path = self.path(key)
        if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO would block the read forever
            raise StorageError(f"{path} is not a regular file")
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StorageError(f"{path} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except OSError:
            raise StorageError(f"{self.path(key)} does not exist") from None

    def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, prefix=True)
        # Walk only the directory the prefix names ("a/b/ro" -> walk <root>/a/b).
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".") and name.endswith(_TMP_SUFFIX):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self.path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror or exc}") from None

    def put_file(self, key: str, local_path: str | os.PathLike[str], if_absent: bool = False) -> None:
        if not Path(local_path).is_file():
            raise StorageError(f"cannot upload {local_path} to {self.join(key)}: no such local file")
        self._write(key, lambda tmp: shutil.copyfile(local_path, tmp), if_absent)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> None:
        src = self.path(key)
        if not src.is_file():
            raise StorageError(f"{src} does not exist")
        atomic_write(local_path, lambda tmp: shutil.copyfile(src, tmp))

    def write_parquet(self, key: str, table: pa.Table, if_absent: bool = False) -> None:
        import pyarrow.parquet as pq

        self._write(key, lambda tmp: pq.write_table(table, tmp), if_absent)

    def sub(self, prefix: str) -> LocalStore:
        return LocalStore(self.root / check_key(prefix.strip("/")))

    def arrow_location(self, key: str) -> tuple[pafs.FileSystem, str]:
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), str(self.root / check_key(key, prefix=True))

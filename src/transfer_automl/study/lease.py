"""One runner per search directory: a lease in the directory's own store.

`lease.json` is created with a conditional write (a hard link locally, a conditional PUT on S3),
so of two runners started together exactly one gets it; it names its holder (host, pid) and an
expiry that a heartbeat thread moves forward every `ttl_s / 3` seconds, in the manner of
Optuna's heartbeat. A second runner is refused at once, naming the holder. A lease whose expiry
has passed (its holder died without releasing it), or whose holder is a process of this host
that no longer exists, is taken over. Read-only commands (report, runs show/sync) take none; the
Kubeflow steps take none either, since one pipeline run orders its own steps.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from transfer_automl.errors import ConfigError, StorageError
from transfer_automl.study.search_dir import SearchDir

LEASE_NAME = "lease.json"
DEFAULT_TTL_S = 60.0


class Lease:
    def __init__(self, directory: SearchDir, ttl_s: float = DEFAULT_TTL_S):
        self.directory = directory
        self.ttl_s = ttl_s
        self.holder = {"host": socket.gethostname(), "pid": os.getpid()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._made_root = False

    def acquire(self) -> Lease:
        """Take the lease or raise ConfigError naming who holds it."""
        store = self.directory.store
        root = Path(store.root) if self.directory.is_local else None
        self._made_root = root is not None and not root.exists()  # removed again if nothing else lands in it
        for _ in range(3):  # a takeover races at most with other takers
            try:
                store.put_bytes(LEASE_NAME, self._body(), if_absent=True)
                break
            except StorageError:
                held = self._read()
                if held is not None and not self._stale(held):
                    raise ConfigError(
                        f"out: the search in {self.directory} is being run by pid {held.get('pid')} on "
                        f"{held.get('host')} (its lease, {self.directory.where(LEASE_NAME)}, runs until "
                        f"{time.strftime('%H:%M:%S', time.localtime(float(held.get('expires_at', 0))))}); "
                        "wait for it or stop it") from None
                store.delete(LEASE_NAME)
        else:
            raise ConfigError(f"out: could not take the lease on {self.directory}; another runner keeps taking it")
        self._thread = threading.Thread(target=self._beat, name="taml-lease", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        held = self._read()
        if held is not None and (held.get("host"), held.get("pid")) == (self.holder["host"], self.holder["pid"]):
            self.directory.store.delete(LEASE_NAME)
        if self._made_root:  # a refused command leaves no directory behind
            with contextlib.suppress(OSError):
                Path(self.directory.store.root).rmdir()  # only if empty

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.directory.store.put_bytes(LEASE_NAME, self._body())
            except StorageError:  # a store hiccup: the next beat tries again, well before expiry
                continue

    def _body(self) -> bytes:
        return json.dumps({**self.holder, "expires_at": time.time() + self.ttl_s}).encode()

    def _read(self) -> dict[str, Any] | None:
        try:
            held = json.loads(self.directory.store.get_bytes(LEASE_NAME))
        except (StorageError, ValueError, UnicodeDecodeError):
            return None  # gone meanwhile, or unreadable: treated as stale
        return held if isinstance(held, dict) else None

    def _stale(self, held: dict[str, Any]) -> bool:
        try:
            expired = float(held.get("expires_at", 0)) < time.time()
        except (TypeError, ValueError):
            return True
        if expired:
            return True
        if held.get("host") == self.holder["host"] and isinstance(held.get("pid"), int):
            return not _alive(held["pid"])
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True

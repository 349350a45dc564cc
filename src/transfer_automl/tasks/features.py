"""Cache of frozen input-module features per (task content, module), in any ArtifactStore.

Computing sentence-encoder features is the slow part of a frozen child; each (task, module) is
embedded once and stored as the `.npy` entry `<root>/<task>-<content hash>/<module>.npy`, where
the root is a local directory or an `s3://` prefix (`--cache-dir`) and the content hash is the
task file's SHA-256, so a changed task never reads stale features. Entries are written
atomically (a renamed temporary file, an S3 PUT). An entry that does not load as the expected
array (truncated, not `.npy`, wrong shape or dtype, non-finite values) is recomputed and
replaced. Loaded arrays stay in memory for the life of the process.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from transfer_automl.errors import StorageError
from transfer_automl.storage import ArtifactStore, LocalStore, get_store
from transfer_automl.tasks.text import TextTask


class FeatureCache:
    def __init__(self, root: str | Path | ArtifactStore):
        self.store = root if isinstance(root, ArtifactStore) else get_store(root)
        self.root: Path | str = self.store.root if isinstance(self.store, LocalStore) else self.store.uri
        self._memory: dict[tuple[str, str], np.ndarray] = {}
        self.computed = 0  # entries computed (not loaded) by this process: lets tests see hits
        self.replaced = 0  # of those, entries that existed but were corrupt

    @staticmethod
    def key(task: TextTask, module: str) -> str:
        return f"{task.name}-{task.content_hash}/{module}.npy"

    def path(self, task: TextTask, module: str) -> Path | str:
        """The entry's location: a local Path, or a uri for a remote store."""
        key = self.key(task, module)
        return self.store.path(key) if isinstance(self.store, LocalStore) else self.store.join(key)

    def get(self, task: TextTask, module: str, compute: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        memo = (task.content_hash, module)
        if memo in self._memory:
            return self._memory[memo]
        key = self.key(task, module)
        features, found = self._load(key, len(task.texts))
        if features is None:
            features = np.ascontiguousarray(compute(task.texts), dtype=np.float32)
            self.computed += 1
            self.replaced += int(found)
            buffer = io.BytesIO()
            np.save(buffer, features, allow_pickle=False)
            self.store.put_bytes(key, buffer.getvalue())
        self._memory[memo] = features
        return features

    def _load(self, key: str, rows: int) -> tuple[np.ndarray | None, bool]:
        """(the entry's array if it is whole and fits, whether an entry exists)."""
        try:
            data = self.store.get_bytes(key)
        except StorageError:
            return None, False  # a miss (or an unreachable store, which the write will report)
        try:
            features = np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None, True
        fits = (features.ndim == 2 and features.shape[0] == rows and features.dtype == np.float32
                and bool(np.isfinite(features).all()))
        return (features if fits else None), True

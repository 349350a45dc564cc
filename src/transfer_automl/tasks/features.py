"""Cache of frozen input-module features per (task content, module).

Computing sentence-encoder features is the slow part of a frozen child; each (task, module) is
embedded once and stored as `<root>/<task>-<content hash>/<module>.npy`, written to a temporary
file and renamed, so a crash never leaves a half-written entry. Loaded arrays stay in memory for
the life of the process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from transfer_automl.storage import atomic_write
from transfer_automl.tasks.text import TextTask


class FeatureCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._memory: dict[tuple[str, str], np.ndarray] = {}
        self.computed = 0  # entries computed (not loaded) by this process: lets tests see hits

    def path(self, task: TextTask, module: str) -> Path:
        return self.root / f"{task.name}-{task.content_hash}" / f"{module}.npy"

    def get(self, task: TextTask, module: str, compute: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        key = (task.content_hash, module)
        if key in self._memory:
            return self._memory[key]
        path = self.path(task, module)
        features = None
        if path.is_file():
            try:
                features = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                features = None  # unreadable entry: recompute and replace it
            if features is not None and features.shape[0] != len(task.texts):
                features = None
        if features is None:
            features = np.ascontiguousarray(compute(task.texts), dtype=np.float32)
            self.computed += 1
            atomic_write(path, lambda tmp: _save_npy(tmp, features))
        self._memory[key] = features
        return features


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append ".npy" to a bare name
        np.save(fh, array, allow_pickle=False)

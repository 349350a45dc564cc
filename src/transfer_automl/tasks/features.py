"""Cache of frozen input-module features per (task content, module).

Computing sentence-encoder features is the slow part of a frozen child; each (task, module) is
embedded once and stored as `<root>/<task>-<content hash>/<module>.npy`, written to a temporary
file and renamed, so a crash never leaves a half-written entry. Loaded arrays stay in memory for
the life of the process.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

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
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, features, allow_pickle=False)
            os.replace(tmp, path)
        self._memory[key] = features
        return features

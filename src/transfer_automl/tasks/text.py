"""Text classification tasks from Parquet files with columns `text`, `label`, `split`.

`split` is "train" / "validation" / "test", or null where the source gives none; null rows are
split 80/10/10 with a fixed seed (as Transfer AutoML did), so every run sees the same split.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from transfer_automl.errors import TaskError
from transfer_automl.storage import is_remote
from transfer_automl.tasks.parquet import read_task_table

SPLITS = ("train", "validation", "test")
REQUIRED_COLUMNS = ("text", "label", "split")
SPLIT_SEED = 20180302  # fixed: the random 80/10/10 split must not change between runs


@dataclass
class TextTask:
    """A loaded task: texts, integer labels, and the row indices of each split."""

    name: str
    texts: list[str]
    labels: np.ndarray  # [N] int64, index into `classes`
    classes: list[str]
    splits: dict[str, np.ndarray]  # split name -> row indices [n_split]
    content_hash: str  # hash of the file bytes: keys the feature cache
    source: str = ""
    truncated_texts: int = 0  # texts cut to TAML_MAX_TEXT_CHARS characters (transfer_automl.limits)
    _majority: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def majority_accuracy(self, split: str) -> float:
        """Accuracy of always predicting the most frequent training class on `split`."""
        if split not in self._majority:
            majority = np.bincount(self.labels[self.splits["train"]], minlength=self.num_classes).argmax()
            self._majority[split] = float((self.labels[self.splits[split]] == majority).mean())
        return self._majority[split]


def load_text_task(path: str | Path, name: str | None = None) -> TextTask:
    """Read and validate one task file; every error names the file and the column or value."""
    path = path if is_remote(path) else Path(path)  # an s3:// uri stays a string
    name = name or Path(str(path)).stem
    table, data = read_task_table(path, REQUIRED_COLUMNS, f"task {name!r}")
    texts = table.column("text").to_pylist()
    labels_raw = table.column("label").to_pylist()
    split_raw = table.column("split").to_pylist()
    for column, values in (("text", texts), ("label", labels_raw)):
        bad = next((i for i, v in enumerate(values) if v is None), None)
        if bad is not None:
            raise TaskError(f"task {name!r}: {path} column {column!r} is null in row {bad}")
    if not all(isinstance(t, str) for t in texts):
        raise TaskError(f"task {name!r}: {path} column 'text' must hold strings")
    texts, truncated, content_hash = _truncated(texts, name, path, data)
    unknown = sorted({s for s in split_raw if s is not None and s not in SPLITS})
    if unknown:
        raise TaskError(f"task {name!r}: {path} column 'split' has value(s) {unknown}; allowed {list(SPLITS)} or null")

    classes = sorted({str(v) for v in labels_raw})
    if len(classes) < 2:
        raise TaskError(f"task {name!r}: {path} column 'label' has only one class {classes}")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[str(v)] for v in labels_raw], dtype=np.int64)
    splits = assign_splits(split_raw)
    for split in SPLITS:
        if len(splits[split]) == 0:
            raise TaskError(f"task {name!r}: {path} has no rows in split {split!r}")
    train_classes = set(labels[splits["train"]].tolist())
    for split in ("validation", "test"):
        unseen = sorted({classes[i] for i in labels[splits[split]].tolist()} - {classes[i] for i in train_classes})
        if unseen:
            raise TaskError(f"task {name!r}: {path} label(s) {unseen} occur in {split!r} but not in 'train'")
    return TextTask(
        name=name, texts=texts, labels=labels, classes=classes, splits=splits,
        content_hash=content_hash, source=str(path), truncated_texts=truncated,
    )


_WARNED: set[tuple[str, str]] = set()  # (source, hash) already warned about in this process


def _truncated(texts: list[str], name: str, path: str | Path, data: bytes) -> tuple[list[str], int, str]:
    """Texts cut to the limit (one huge text would take minutes and gigabytes to tokenize), how
    many were cut, and the content hash, which names the limit when it cut something (it keys the
    feature cache, and features of cut texts differ)."""
    from transfer_automl.limits import limits

    cap = limits().max_text_chars
    digest = hashlib.sha256(data)
    long = sum(len(t) > cap for t in texts)
    if not long:
        return texts, 0, digest.hexdigest()[:16]
    digest.update(f"|max_text_chars={cap}".encode())
    content_hash = digest.hexdigest()[:16]
    if (str(path), content_hash) not in _WARNED:
        _WARNED.add((str(path), content_hash))
        print(f"taml: warning: task {name!r}: {long} text(s) in {path} longer than {cap:,} characters were "
              "truncated (TAML_MAX_TEXT_CHARS)", file=sys.stderr)
    return [t[:cap] for t in texts], long, content_hash


def assign_splits(split_raw: list[str | None]) -> dict[str, np.ndarray]:
    """Given splits are kept; null rows go 80/10/10 to train/validation/test with a fixed seed."""
    split = np.array([s if s is not None else "" for s in split_raw], dtype=object)
    unassigned = np.flatnonzero(split == "")
    if len(unassigned):
        order = np.random.default_rng(SPLIT_SEED).permutation(unassigned)
        n_train = int(round(0.8 * len(order)))
        n_val = int(round(0.1 * len(order)))
        split[order[:n_train]] = "train"
        split[order[n_train : n_train + n_val]] = "validation"
        split[order[n_train + n_val :]] = "test"
    if not (split == "validation").any() and (split == "train").sum() >= 10:
        # Sources with only train/test (20newsgroups): hold out 10 % of train for validation.
        train = np.flatnonzero(split == "train")
        order = np.random.default_rng(SPLIT_SEED).permutation(train)
        split[order[: max(1, len(order) // 10)]] = "validation"
    return {s: np.flatnonzero(split == s) for s in SPLITS}

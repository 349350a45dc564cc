"""Image classification tasks from Parquet files, and tasks derived from them by name.

A source file `<dir>/<source>.parquet` has columns `pixels` (binary, row-major uint8,
height*width bytes), `height`, `width` (int), `label` (string) and `split` ("train" /
"validation" / "test" or null). Splits follow the text tasks exactly: null rows go 80/10/10 with
the same fixed seed, and a source with only train/test gives 10 % of train to validation.

Task names:
    <source>              every label of the source (digits: 10 classes)
    <source>:is<d>        binary "is it d": classes ["other", "<d>"], label 1 where label == d
    <source>:odd_even     binary parity of an integer label: classes ["even", "odd"]

The directory is `data_dir`, else `$TAML_IMAGE_DIR`, else `../shared/data/images` (relative to
the working directory).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from transfer_automl.errors import TaskError
from transfer_automl.tasks.parquet import read_task_table
from transfer_automl.tasks.text import SPLITS, assign_splits

REQUIRED_COLUMNS = ("pixels", "height", "width", "label", "split")
DEFAULT_IMAGE_DIR = Path("../shared/data/images")
_IS_DIGIT = re.compile(r"^is(.+)$")


@dataclass
class ImageTask:
    """A loaded image task: pixels scaled to [0, 1], integer labels, and the rows of each split."""

    name: str
    pixels: np.ndarray  # [N, H*W] float32 in [0, 1], row-major
    height: int
    width: int
    labels: np.ndarray  # [N] int64, index into `classes`
    classes: list[str]
    splits: dict[str, np.ndarray]  # split name -> row indices [n_split]
    content_hash: str  # hash of the source file bytes and the derivation
    source: str = ""

    @property
    def features(self) -> np.ndarray:
        """The pixels, [N, H*W] float32: the same name as a text task's frozen features."""
        return self.pixels

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def pool_images(pixels: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """[N, H*W] in [0, 1] -> [N, size*size] by adaptive average pooling (identity when H = W = size).

    Brings the images of every source to one common size, keeping [0, 1] pixel values and
    averaging rather than dropping pixels: the Fisher probes (transfer/fisher.py) and the FUSE
    candidates (search/fuse.py) read pooled images."""
    import torch  # deferred: loading an image task needs no torch
    import torch.nn.functional as F

    x = torch.tensor(pixels, dtype=torch.float32).reshape(-1, 1, height, width)  # a copy: sources are read-only
    return F.adaptive_avg_pool2d(x, size).reshape(len(x), size * size).numpy()


def image_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("TAML_IMAGE_DIR"):
        return Path(os.environ["TAML_IMAGE_DIR"])
    return DEFAULT_IMAGE_DIR


def available_image_sources(directory: str | Path | None = None) -> list[str]:
    root = image_dir(directory)
    return sorted(p.stem for p in root.glob("*.parquet")) if root.is_dir() else []


def is_image_task(name: str, directory: str | Path | None = None) -> bool:
    """Whether `name`'s source part names an image file in the image directory.

    Only the Parquet schema is read: a text task file in the same directory (`--data-dir` may
    hold both) has no `pixels` column and is not an image task."""
    path = image_dir(directory) / f"{name.split(':', 1)[0]}.parquet"
    if not path.is_file():
        return False
    import pyarrow.parquet as pq

    try:
        return "pixels" in pq.read_schema(path).names
    except (OSError, ValueError):
        return False  # not readable Parquet: the loader that reads it names the problem


def load_image_task(name: str, data_dir: str | Path | None = None) -> ImageTask:
    """Load `<source>`, `<source>:is<d>` or `<source>:odd_even`; errors name the file, column or task."""
    source, _, derivation = name.partition(":")
    root = image_dir(data_dir)
    path = root / f"{source}.parquet"
    if not source or not path.is_file():
        known = available_image_sources(data_dir)
        raise TaskError(f"unknown image task {name!r}: no {path}; sources in {root}: {', '.join(known) or 'none'}")
    base = _read_source(str(path), path.stat().st_mtime_ns)
    raw_labels = base["labels"]
    if not derivation:
        classes = sorted(set(raw_labels.tolist()), key=_label_key)
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[v] for v in raw_labels.tolist()], dtype=np.int64)
    elif derivation == "odd_even":
        bad = next((v for v in raw_labels.tolist() if not _is_int(v)), None)
        if bad is not None:
            raise TaskError(f"task {name!r}: {path} column 'label' has non-integer value {bad!r}; odd_even needs integers")
        classes = ["even", "odd"]
        labels = np.array([int(v) % 2 for v in raw_labels.tolist()], dtype=np.int64)
    elif (m := _IS_DIGIT.match(derivation)) is not None:
        target = m.group(1)
        present = sorted(set(raw_labels.tolist()), key=_label_key)
        if target not in present:
            raise TaskError(f"task {name!r}: label {target!r} does not occur in {path} column 'label'; labels {present}")
        classes = ["other", target]
        labels = (raw_labels == target).astype(np.int64)
    else:
        raise TaskError(
            f"task {name!r}: unknown derived task {derivation!r}; use {source}, {source}:is<label> or {source}:odd_even"
        )
    splits = base["splits"]
    for split in SPLITS:
        if len(splits[split]) == 0:
            raise TaskError(f"task {name!r}: {path} has no rows in split {split!r}")
    content_hash = hashlib.sha256(f"{base['hash']}:{derivation}".encode()).hexdigest()[:16]
    return ImageTask(
        name=name, pixels=base["pixels"], height=base["height"], width=base["width"], labels=labels,
        classes=classes, splits=splits, content_hash=content_hash, source=str(path),
    )


@lru_cache(maxsize=8)
def _read_source(path: str, mtime_ns: int) -> dict:
    """Read and validate one source file (cached per path and modification time)."""
    table, data = read_task_table(path, REQUIRED_COLUMNS, "image file")
    columns = {c: table.column(c).to_pylist() for c in REQUIRED_COLUMNS}
    for column in ("pixels", "height", "width", "label"):
        bad = next((i for i, v in enumerate(columns[column]) if v is None), None)
        if bad is not None:
            raise TaskError(f"image file {path} column {column!r} is null in row {bad}")
    sizes = sorted(set(zip(columns["height"], columns["width"], strict=True)))
    if len(sizes) != 1:
        raise TaskError(f"image file {path} columns 'height'/'width' must be one size for all rows; found {sizes[:5]}")
    height, width = (int(v) for v in sizes[0])
    if height < 1 or width < 1:
        raise TaskError(f"image file {path} columns 'height'/'width' must be positive, got {height}x{width}")
    for i, p in enumerate(columns["pixels"]):
        if len(p) != height * width:
            raise TaskError(
                f"image file {path} column 'pixels' row {i} has {len(p)} bytes; height*width = {height}*{width} = {height * width}"
            )
    unknown = sorted({s for s in columns["split"] if s is not None and s not in SPLITS})
    if unknown:
        raise TaskError(f"image file {path} column 'split' has value(s) {unknown}; allowed {list(SPLITS)} or null")
    pixels = np.frombuffer(b"".join(columns["pixels"]), dtype=np.uint8).reshape(table.num_rows, height * width)
    pixels = pixels.astype(np.float32) / np.float32(255.0)
    pixels.setflags(write=False)  # shared between the tasks derived from this source
    return {
        "pixels": pixels, "height": height, "width": width,
        "labels": np.array([str(v) for v in columns["label"]], dtype=object),
        "splits": assign_splits(columns["split"]), "hash": hashlib.sha256(data).hexdigest()[:16],
    }


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _label_key(value: str) -> tuple[int, int | str]:
    """Numeric labels in numeric order ("2" before "10"), then the others alphabetically."""
    return (0, int(value)) if _is_int(value) else (1, value)

"""Probe networks and their diagonal empirical Fisher information (log-determinant task distance).

The paper ("Task similarity via the log-determinant of the Fisher information", eq. 1) trains an
epsilon-approximation network N_t per task and computes the empirical Fisher of its loss on a
task's data:

    F = 1/M sum_i grad_theta log p(y_i | x_i, theta) grad_theta log p(y_i | x_i, theta)^T      (1)

kept, as in the paper's experiments, to its diagonal: F_jj = mean_i (d loss_i / d theta_j)^2.

The probe, fixed and documented here so that distances are comparable between runs:

* Input. Images: every image is mapped to one common size, COMMON_IMAGE_SIZE x COMMON_IMAGE_SIZE
  (8 x 8, the size of the smallest source, optdigits) by adaptive average pooling, so a
  probe trained on 28 x 28 MNIST applies to 8 x 8 digits and back. Pooling keeps [0, 1] pixel
  values and averages rather than drops pixels. Text: the frozen mean of glove-6b-50d word vectors
  (50 floats per text).
* Network. An MLP  input -> Linear(hidden) -> ReLU -> Linear(head_width). All probes compared in
  one matrix share one architecture (and so one parameter count n): head_width is the largest
  number of classes among the compared tasks; a task with fewer classes simply never targets
  the extra outputs.
* Training. Adam on the task's train split, cross-entropy, `steps` mini-batches of `batch_size`;
  the seed sets the initialisation and the batch order (the paper repeats with 10 inits).
* Fisher labels. The Fisher of baseline probe N_b on target data X_t uses the TARGET's labels
  (empirical Fisher, eq. 1): every target label is a valid output index because head_width
  covers every task's classes, so no remapping is needed. The gradients then measure how well
  N_b's function explains task t, which is what the paper's distance asks ("how well the
  baseline approximation networks perform on the target task's data"). `fisher_labels="model"`
  instead samples labels from the probe's own predictive distribution (the true Fisher); it
  ignores the target's labels and depends on the target only through its inputs.
* Samples. The Fisher is computed on at most `fisher_samples` rows of the target's validation
  split (held out from every probe's training, so N_t is not favoured by having memorised them),
  the same rows for every baseline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from transfer_automl.errors import ConfigError, TaskError
from transfer_automl.tasks.images import ImageTask, pool_images  # pool_images: also importable here

COMMON_IMAGE_SIZE = 8  # images of every source are average-pooled to 8 x 8 (see module docstring)
TEXT_MODULE = "glove-6b-50d"  # frozen text features of the text probe
FISHER_SEED = 7  # fixed choice of the Fisher rows of each target


@dataclass(frozen=True)
class ProbeConfig:
    """The probe network, its training and its Fisher (every field is part of the distance)."""

    hidden: int = 64  # width of the probe's one hidden layer
    steps: int = 300  # Adam steps on the task's train split
    batch_size: int = 128  # rows per step
    lr: float = 1e-2  # Adam step size
    fisher_samples: int = 500  # at most this many target rows (validation split) per Fisher
    fisher_batch: int = 256  # rows per vmap call (memory bound only; the result does not depend on it)
    fisher_labels: Literal["target", "model"] = "target"  # empirical Fisher (target labels) or true Fisher

    def __post_init__(self) -> None:
        for field in ("hidden", "steps", "batch_size", "fisher_samples", "fisher_batch"):
            if getattr(self, field) < 1:
                raise ConfigError(f"ProbeConfig.{field} must be >= 1, got {getattr(self, field)}")
        if not self.lr > 0:
            raise ConfigError(f"ProbeConfig.lr must be > 0, got {self.lr}")
        if self.fisher_labels not in ("target", "model"):
            raise ConfigError(f"ProbeConfig.fisher_labels must be 'target' or 'model', got {self.fisher_labels!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ProbeData:
    """One task as a probe sees it: fixed-size float inputs and integer labels."""

    name: str
    modality: str  # "image" or "text"
    x_train: torch.Tensor  # [n_train, D] float32
    y_train: torch.Tensor  # [n_train] int64
    x_fisher: torch.Tensor  # [M, D] float32, M <= fisher_samples (validation rows)
    y_fisher: torch.Tensor  # [M] int64
    num_classes: int

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])


def probe_data(task, fisher_samples: int = ProbeConfig.fisher_samples, features: np.ndarray | None = None) -> ProbeData:
    """An ImageTask or TextTask as probe inputs; `features` overrides the text features (tests, caches)."""
    if isinstance(task, ImageTask):
        modality = "image"
        x = pool_images(task.pixels, task.height, task.width, COMMON_IMAGE_SIZE)
    else:
        modality = "text"
        if features is None:
            from transfer_automl.children.embeddings import get_module

            features = get_module(TEXT_MODULE).features(task.texts)
        x = np.asarray(features, dtype=np.float32)
    if len(x) != len(task.labels):
        raise TaskError(f"task {task.name!r}: {len(x)} feature rows for {len(task.labels)} labels")
    rows = task.splits["validation"]
    if len(rows) > fisher_samples:
        rows = np.sort(np.random.default_rng(FISHER_SEED).choice(rows, size=fisher_samples, replace=False))
    train = task.splits["train"]
    labels = np.asarray(task.labels, dtype=np.int64)
    return ProbeData(
        name=task.name, modality=modality,
        x_train=torch.from_numpy(np.ascontiguousarray(x[train])), y_train=torch.from_numpy(labels[train]),
        x_fisher=torch.from_numpy(np.ascontiguousarray(x[rows])), y_fisher=torch.from_numpy(labels[rows]),
        num_classes=len(task.classes),
    )


def load_probe_tasks(
    names: list[str], modality: str = "auto", data_dir: str | Path | None = None,
    fisher_samples: int = ProbeConfig.fisher_samples,
) -> list[ProbeData]:
    """Resolve task names (image tasks as in tasks/images.py, text tasks by the text registry)."""
    from transfer_automl.tasks import load_task
    from transfer_automl.tasks.images import (
        available_image_sources,
        image_dir,
        is_image_task,
        load_image_task,
    )

    if modality not in ("auto", "image", "text"):
        raise ConfigError(f"modality must be auto, image or text, got {modality!r}")
    if len(names) < 2:
        raise ConfigError(f"a task distance needs at least 2 tasks, got {list(names)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"tasks must be distinct, got {list(names)}")
    out = []
    for name in names:
        kind = modality
        if modality == "auto":  # a derived name (":") can only be an image task
            kind = "image" if ":" in name or is_image_task(name, data_dir) else "text"
        if kind == "image":
            task = load_image_task(name, data_dir)
        else:
            try:
                task = load_task(name, data_dir)
            except TaskError as exc:
                if modality != "auto":
                    raise
                sources = ", ".join(available_image_sources(data_dir)) or "none"
                raise TaskError(f"{exc}; image sources in {image_dir(data_dir)}: {sources}") from None
        out.append(probe_data(task, fisher_samples))
    kinds = sorted({d.modality for d in out})
    if len(kinds) > 1:
        found = ", ".join(f"{d.name}={d.modality}" for d in out)
        raise ConfigError(f"tasks of one distance matrix must share a modality (one probe input); got {found}")
    return out


def make_probe(input_dim: int, head_width: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, head_width))


def train_probe(data: ProbeData, seed: int, config: ProbeConfig = ProbeConfig(), head_width: int | None = None) -> nn.Module:
    """Train the probe (an epsilon-approximation network for `data`); `seed` sets init and batches."""
    head_width = head_width or data.num_classes
    if head_width < data.num_classes:
        raise ConfigError(f"head_width {head_width} < {data.num_classes} classes of task {data.name!r}")
    with _seeded(seed):
        model = make_probe(data.input_dim, head_width, config.hidden)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n = len(data.x_train)
    model.train()
    for _ in range(config.steps):
        idx = torch.randint(n, (min(config.batch_size, n),), generator=generator)
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return model


def diagonal_fisher(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None, batch_size: int = 256,
) -> torch.Tensor:
    """Diagonal empirical Fisher: F_j = 1/M sum_i (d loss(model(x_i), y_i) / d theta_j)^2.

    `loss_fn(output[1, ...], target[1, ...]) -> scalar` is the per-sample negative log-likelihood
    (default cross-entropy, i.e. -log p(y_i | x_i, theta)). Per-sample gradients come from
    torch.func (vmap over grad), `batch_size` rows at a time. Returns a flat tensor [n_params] in
    `model.named_parameters()` order.
    """
    from torch.func import functional_call, grad, vmap

    loss_fn = loss_fn or F.cross_entropy
    params = {k: v.detach() for k, v in model.named_parameters()}

    def sample_loss(p, xi, yi):
        out = functional_call(model, p, (xi.unsqueeze(0),))  # [1, ...]
        return loss_fn(out, yi.unsqueeze(0))

    per_sample_grad = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    m = len(x)
    if m == 0:
        raise ConfigError("diagonal_fisher needs at least one sample")
    for start in range(0, m, batch_size):
        grads = per_sample_grad(params, x[start : start + batch_size], y[start : start + batch_size])
        for k, g in grads.items():  # g: [b, *param shape]
            total[k] += g.pow(2).sum(0)
    return torch.cat([t.reshape(-1) for t in total.values()]) / m


def probe_fisher(model: nn.Module, data: ProbeData, config: ProbeConfig = ProbeConfig(), seed: int = 0) -> torch.Tensor:
    """Diagonal Fisher of `model` on `data`'s Fisher rows, labels per `config.fisher_labels`."""
    y = data.y_fisher
    if config.fisher_labels == "model":
        with torch.no_grad():
            probs = F.softmax(model(data.x_fisher), dim=-1)
        y = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(seed)).squeeze(1)
    return diagonal_fisher(model, data.x_fisher, y, batch_size=config.fisher_batch)


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch's global generator for parameter init without disturbing the caller's stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield

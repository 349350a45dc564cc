"""Task distances, registered by name: `fisher_ld` (log-determinant of the Fisher),
`embedding_cosine` (learned controller task embeddings) and `rank_correlation` (trial-based: how
alike two tasks rank the configurations both evaluated).

fisher_ld, the paper's eq. 2 with diagonal Fisher matrices (eq. 3 with eigenvalues = diagonal):

    d[b, t] = | 1/n sum_j log(F_{b,t,j} + sigma^2) - 1/n sum_j log(F_{t,t,j} + sigma^2) |

where F_{b,t} is the diagonal Fisher of the probe trained on task b, computed on task t's data
(transfer/fisher.py), and n the number of probe parameters. d[t, t] = 0 by construction and
d >= 0; d is not symmetric (d[b, t] uses t's data, d[t, b] uses b's). Repeated with R different
initialisations (the paper: R = 10); `matrix` returns the mean and std over the repeats.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from transfer_automl.errors import CheckpointError, ConfigError, TaskError
from transfer_automl.registry import Registry

DISTANCES: Registry[type[TaskDistance]] = Registry("task distance")
DEFAULT_SIGMA = 1e-3  # sigma in log(F + sigma^2): floor for parameters with (near) zero Fisher

D = TypeVar("D", bound=type)


def register_distance(name: str) -> Callable[[D], D]:
    """Class decorator: make a TaskDistance selectable by `name` (also its `name`); names are unique."""

    def wrap(cls: D) -> D:
        DISTANCES.register(name, cls)
        cls.name = name
        return cls

    return wrap


def get_distance(name: str, **settings: Any) -> TaskDistance:
    """A new task distance of the registered kind `name`; ConfigError naming the kinds if unknown."""
    return DISTANCES.get(name)(**settings)


@dataclass
class DistanceMatrix:
    """mean[b, t], std[b, t]: distance from source task b (row) to target task t (column)."""

    names: list[str]
    mean: np.ndarray  # [K, K]
    std: np.ndarray  # [K, K]
    repeats: int = 1
    settings: dict = field(default_factory=dict)

    def rows(self) -> list[dict]:
        return [
            {"source": b, "target": t, "mean": float(self.mean[i, j]), "std": float(self.std[i, j])}
            for i, b in enumerate(self.names) for j, t in enumerate(self.names)
        ]

    def format(self, digits: int = 3) -> str:
        """The mean matrix as text: rows are sources, columns targets."""
        width = max(10, max(len(n) for n in self.names) + 2)
        lines = [" " * width + "".join(f"{n:>{width}}" for n in self.names)]
        for i, b in enumerate(self.names):
            cells = "".join(f"{f'{self.mean[i, j]:.{digits}f}±{self.std[i, j]:.{digits}f}':>{width}}" for j in range(len(self.names)))
            lines.append(f"{b:<{width}}{cells}")
        return "\n".join(lines)

    def write(self, out: str | Path, title: str = "") -> tuple[Path, Path]:
        """Write `distance.parquet` (source, target, mean, std) and the heatmap `distance.png`."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from transfer_automl.storage import atomic_write

        out = Path(out)
        table = pa.Table.from_pylist(self.rows(), schema=pa.schema(
            [("source", pa.string()), ("target", pa.string()), ("mean", pa.float64()), ("std", pa.float64())]))
        parquet = atomic_write(out / "distance.parquet", lambda tmp: pq.write_table(table, tmp))
        png = atomic_write(out / "distance.png", lambda tmp: plot_heatmap(self, tmp, title=title))
        return parquet, png


def plot_heatmap(matrix: DistanceMatrix, path: str | Path, title: str = "") -> None:
    """Mean and std heatmaps side by side with annotated cells (the paper's Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(matrix.names)
    size = max(4.0, 0.9 * k + 2.0)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size), constrained_layout=True)
    for ax, values, label in ((axes[0], matrix.mean, "mean"), (axes[1], matrix.std, "std")):
        image = ax.imshow(values, cmap="viridis")
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_xticks(range(k), matrix.names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), matrix.names, fontsize=8)
        ax.set_xlabel("target task t")
        ax.set_ylabel("source (baseline) task b")
        ax.set_title(f"{label} d[b, t] over {matrix.repeats} repeats")
        high = np.nanmax(values) if np.isfinite(values).any() else 0.0
        for i in range(k):
            for j in range(k):
                colour = "black" if values[i, j] > 0.6 * high else "white"
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    if title:
        fig.suptitle(title)
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


class TaskDistance(ABC):
    """Base class: `matrix(tasks)` -> DistanceMatrix; `distance(a, b)` from a two-task matrix."""

    name: str = ""

    @abstractmethod
    def matrix(self, tasks: Sequence, **kwargs) -> DistanceMatrix:
        """The distance between every ordered pair of `tasks` (rows: source, columns: target)."""

    def distance(self, a, b, **kwargs) -> float:
        """d[a, b]: from source a to target b."""
        return float(self.matrix([a, b], **kwargs).mean[0, 1])


def fisher_ld(f_bt, f_tt, sigma: float = DEFAULT_SIGMA) -> float:
    """| mean_j log(f_bt_j + sigma^2) - mean_j log(f_tt_j + sigma^2) |  (paper eq. 2, diagonal F)."""
    import torch

    f_bt = torch.as_tensor(f_bt, dtype=torch.float64)
    f_tt = torch.as_tensor(f_tt, dtype=torch.float64)
    if f_bt.shape != f_tt.shape:
        raise ConfigError(f"Fisher diagonals differ in size: {tuple(f_bt.shape)} vs {tuple(f_tt.shape)}")
    s2 = sigma * sigma
    return float((torch.log(f_bt + s2).mean() - torch.log(f_tt + s2).mean()).abs())


@register_distance("fisher_ld")
class FisherLogDet(TaskDistance):
    """Log-determinant distance of diagonal Fisher matrices of probe networks (module docstring)."""

    def __init__(self, sigma: float = DEFAULT_SIGMA, config=None):
        from transfer_automl.transfer.fisher import ProbeConfig

        if not (sigma > 0 and math.isfinite(sigma)):
            raise ConfigError(f"sigma must be a positive number, got {sigma}")
        self.sigma = sigma
        self.config = config or ProbeConfig()

    def matrix(self, tasks: Sequence, repeats: int = 10, seed: int = 0, progress: Callable[[str], None] | None = None) -> DistanceMatrix:
        """`tasks`: ProbeData (transfer.fisher.probe_data / load_probe_tasks). Repeat r trains every
        probe with seed `seed + r`; all probes share head width = max classes over `tasks`."""
        from transfer_automl.transfer.fisher import probe_fisher, train_probe

        if repeats < 1:
            raise ConfigError(f"repeats must be >= 1, got {repeats}")
        if len(tasks) < 2:
            raise ConfigError(f"a distance matrix needs at least 2 tasks, got {len(tasks)}")
        dims = {t.input_dim for t in tasks}
        if len(dims) != 1:
            raise TaskError(f"tasks have different probe input sizes {sorted(dims)}: " +
                            ", ".join(f"{t.name}={t.input_dim}" for t in tasks))
        head = max(t.num_classes for t in tasks)
        k = len(tasks)
        d = np.zeros((repeats, k, k))
        for r in range(repeats):
            probes = [train_probe(t, seed + r * 1000 + i, self.config, head_width=head) for i, t in enumerate(tasks)]
            for j, target in enumerate(tasks):
                fishers = [probe_fisher(p, target, self.config, seed=seed + r) for p in probes]  # F_{b,t} for every b
                for i in range(k):
                    d[r, i, j] = 0.0 if i == j else fisher_ld(fishers[i], fishers[j], self.sigma)
            if progress is not None:
                progress(f"repeat {r + 1}/{repeats} done")
        std = d.std(axis=0, ddof=1) if repeats > 1 else np.zeros((k, k))
        return DistanceMatrix(
            names=[t.name for t in tasks], mean=d.mean(axis=0), std=std, repeats=repeats,
            settings={"distance": self.name, "sigma": self.sigma, "seed": seed, "head_width": head,
                      **self.config.to_dict()},
        )


@register_distance("embedding_cosine")
class EmbeddingCosine(TaskDistance):
    """1 - cosine similarity of the task embeddings a multitask controller learned.

    Reads a search checkpoint (`read_checkpoint_file`: SHA-256 checked, `torch.load(weights_only=True)`): task names in ["tasks"], the
    embedding table as the controller parameter whose name ends in "task_embeddings.weight"
    (LSTM and transformer controllers both have one).
    """

    def __init__(self, checkpoint: str | Path):
        import torch

        from transfer_automl.search.checkpoint import read_checkpoint_file

        path = Path(checkpoint)
        body = read_checkpoint_file(path)  # CheckpointError naming the file if missing, corrupt or foreign
        state = body.get("controller_state") if isinstance(body, dict) else None
        if not isinstance(state, dict) or "tasks" not in body:
            raise CheckpointError(f"checkpoint {path} has no controller_state/tasks: not a controller search")
        keys = [k for k in state if k.endswith("task_embeddings.weight")]
        if len(keys) != 1:
            raise CheckpointError(f"checkpoint {path}: expected one '*task_embeddings.weight' parameter, found {keys}")
        self.path = path
        self.tasks = [str(t) for t in body["tasks"]]
        self.embeddings = state[keys[0]].detach().to(torch.float64).numpy()  # [num_tasks, E]
        if len(self.embeddings) != len(self.tasks):
            raise CheckpointError(f"checkpoint {path}: {len(self.embeddings)} embeddings for {len(self.tasks)} tasks")

    def similarity(self, tasks: Sequence[str] | None = None) -> np.ndarray:
        """Cosine similarity [K, K] of the named tasks' embeddings (default: all, checkpoint order)."""
        names = list(tasks) if tasks is not None else self.tasks
        unknown = [t for t in names if t not in self.tasks]
        if unknown:
            raise TaskError(f"task(s) {unknown} not in checkpoint {self.path}; it has {self.tasks}")
        e = self.embeddings[[self.tasks.index(t) for t in names]]
        norm = np.linalg.norm(e, axis=1, keepdims=True)
        unit = e / np.where(norm > 0, norm, 1.0)
        return np.clip(unit @ unit.T, -1.0, 1.0)

    def matrix(self, tasks: Sequence[str] | None = None, **kwargs) -> DistanceMatrix:
        names = list(tasks) if tasks is not None else self.tasks
        dist = 1.0 - self.similarity(names)
        np.fill_diagonal(dist, 0.0)
        return DistanceMatrix(names=names, mean=dist, std=np.zeros_like(dist), repeats=1,
                              settings={"distance": self.name, "checkpoint": str(self.path)})


def spearman(a, b) -> float:
    """Spearman rank correlation of two equally long value lists (average ranks for ties);
    NaN when either list is constant or shorter than 2."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) != len(b):
        raise ConfigError(f"spearman needs equally long lists, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return math.nan
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denominator) if denominator > 0 else math.nan


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)  # tied values share the mean of their ranks
    return sums[inverse] / counts[inverse]


@register_distance("rank_correlation")
class RankCorrelation(TaskDistance):
    """Trial-based distance for tasks without data: d[a, b] = 1 - Spearman rho of the values that
    tasks a and b gave the configurations BOTH evaluated (from ledgers or a benchmark table).

    0 when both rank the shared configurations alike, 1 when unrelated, 2 when reversed; symmetric,
    and blind to each task's metric scale (only ranks count). Where fewer than `min_common`
    configurations are shared, or one task's values are all equal, the distance is undefined:
    NaN in `matrix`, a ConfigError from `distance`.
    """

    def __init__(self, evaluations: dict[str, dict[Any, float]], min_common: int = 3):
        if min_common < 2:
            raise ConfigError(f"min_common must be >= 2, got {min_common}")
        self.min_common = min_common
        self.evaluations = {str(t): {k: float(v) for k, v in values.items()} for t, values in evaluations.items()}
        for task, values in self.evaluations.items():
            bad = next((k for k, v in values.items() if not math.isfinite(v)), None)
            if bad is not None:
                raise ConfigError(f"task {task!r}: configuration {bad!r} has a non-finite value {values[bad]}")

    @classmethod
    def from_ledger(cls, rows: Sequence[dict], min_common: int = 3) -> RankCorrelation:
        """Ledger rows (task, config, val_accuracy, status): ok trials; a configuration tried
        more than once counts with its mean value."""
        from transfer_automl.trial_status import STATUS_OK

        sums: dict[str, dict[str, list[float]]] = {}
        for row in rows:
            value = row.get("val_accuracy")
            if row.get("status") != STATUS_OK or value is None or not math.isfinite(value):
                continue
            config = row["config"] if isinstance(row["config"], str) else json.dumps(row["config"], sort_keys=True)
            key = json.dumps(json.loads(config), sort_keys=True)  # one spelling per configuration
            sums.setdefault(str(row["task"]), {}).setdefault(key, []).append(float(value))
        return cls({t: {k: float(np.mean(v)) for k, v in values.items()} for t, values in sums.items()}, min_common)

    @classmethod
    def from_table(cls, bench, tasks: Sequence[str] | None = None, rows: Sequence[int] | None = None,
                   min_common: int = 3) -> RankCorrelation:
        """A TableBenchmark's metric per task, on `rows` (default every row)."""
        picked = np.arange(bench.num_rows) if rows is None else np.asarray(rows, dtype=np.int64)
        return cls({t: dict(zip(picked.tolist(), bench.metric[t][picked].tolist(), strict=True))
                    for t in (tasks or bench.tasks)}, min_common)

    def _pair(self, a: str, b: str) -> float:
        if a == b:
            return 0.0
        va, vb = self.evaluations[a], self.evaluations[b]
        common = [k for k in va if k in vb]
        if len(common) < self.min_common:
            return math.nan
        return 1.0 - spearman([va[k] for k in common], [vb[k] for k in common])

    def matrix(self, tasks: Sequence[str] | None = None, **kwargs) -> DistanceMatrix:
        names = list(tasks) if tasks is not None else sorted(self.evaluations)
        unknown = [t for t in names if t not in self.evaluations]
        if unknown:
            raise TaskError(f"task(s) {unknown} have no evaluations; known: {sorted(self.evaluations)}")
        d = np.array([[self._pair(a, b) for b in names] for a in names])
        return DistanceMatrix(names=names, mean=d, std=np.zeros_like(d), repeats=1,
                              settings={"distance": self.name, "min_common": self.min_common})

    def distance(self, a, b, **kwargs) -> float:
        value = float(self.matrix([a, b]).mean[0, 1])
        if math.isnan(value):
            shared = sum(1 for k in self.evaluations[a] if k in self.evaluations[b])
            raise ConfigError(f"rank_correlation of {a!r} and {b!r} is undefined: {shared} shared configurations "
                              f"(need {self.min_common}) or a task whose values are all equal")
        return value

"""FUSE (fusion search) over image-classifier candidates (`taml fuse`).

The LD-NAS paper (Algorithm 1, eq. 4) searches with FUSE: C candidate networks are trained
jointly through the softmax-relaxed mixture of their outputs

    c_bar(X) = sum_c softmax(alpha)_c * c(X)                                            (4)

alternating (i) a weight step on a training batch, alpha frozen:  descend grad_w L_tr(w; alpha)
and (ii) an alpha step on a validation batch, weights frozen:    descend grad_alpha L_val(alpha; w).
The round's winner is c* = argmax_c alpha_c; it is kept, the other C - 1 candidates are
resampled from the (possibly reduced) search space, and the next round runs on {c*, new ones},
until the budget of candidate trainings is spent or c* stays the same for `patience` rounds.

Choices made here where the paper is silent (all documented settings of `FuseConfig`):
* c(X) is each candidate's class-probability vector, so c_bar is a proper mixture and the loss is
  its negative log-likelihood, -log sum_c softmax(alpha)_c p_c(y | x).
* Every round trains its candidates from a fresh initialization, the kept c* included: c* keeps
  its architecture, not its weights, so it never wins a round only by having trained longer.
* Each candidate's weights have their own Adam step size, the candidate's `learning_rate`
  decision; alpha has one Adam optimizer (`alpha_lr`) and starts at 0 (alpha = 1/|C| after the
  softmax, as in Algorithm 1).
* After a round each candidate is also scored alone (argmax of its own output) on the
  validation and test splits: the ledger keeps those accuracies next to alpha.

The candidate space (`FUSE_IMAGE_SPACE`, built in as `fuse-image`): a stack of `layers` blocks
over the image pooled to `image_size` x `image_size` (8 x 8: the Fisher probes' common size),
each block either Linear(width) (`mlp`) or Conv2d(width, k x k, same padding) (`cnn3`, `cnn5`),
then the activation and dropout; a linear head over the flattened last block. A space file may
restrict the choices (e.g. `taml transfer --reduce-space`'s top-k space) but must keep every
decision. Training one candidate alone (`train_candidate`) is the image child of a
single-trial search (benchmarks/transfer_selection.py).

Why FUSE is not a `taml search --method`: the ask/tell interface hands each configuration to a
child trainer that trains it alone and returns one reward. FUSE never trains a candidate alone;
its signal is alpha, learned while the candidates train together through one mixture, so the
candidates of a round must be trained in one process by the search itself.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from transfer_automl.errors import ConfigError, SearchSpaceError
from transfer_automl.space import Decision, SearchSpace

FUSE_IMAGE_SPACE = SearchSpace(
    "fuse-image",
    (
        Decision("architecture", ("mlp", "cnn3", "cnn5"), "block type: Linear, or Conv2d with a 3x3 or 5x5 kernel"),
        Decision("layers", (1, 2), "number of blocks"),
        Decision("width", (8, 16, 32), "units (mlp) or channels (cnn) per block"),
        Decision("activation", ("relu", "tanh"), "block activation"),
        Decision("dropout", (0.0, 0.3), "dropout after every block"),
        Decision("learning_rate", (0.001, 0.01, 0.1), "Adam step size of the candidate's weights"),
    ),
)
ARCHITECTURES = {"mlp": 0, "cnn3": 3, "cnn5": 5}  # name -> conv kernel size (0: linear blocks)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "swish": nn.SiLU}
LEDGER_FILE = "candidates.parquet"
BEST_FILE = "best.json"


def get_fuse_space(name_or_path: str | None) -> SearchSpace:
    """`fuse-image` (default) or a space file whose decisions are those of fuse-image."""
    from transfer_automl.space import get_space

    space = FUSE_IMAGE_SPACE if name_or_path in (None, "", FUSE_IMAGE_SPACE.name) else get_space(name_or_path)
    check_space(space)
    return space


def check_space(space: SearchSpace) -> None:
    """Every fuse-image decision must be present and unconditional; choices must be buildable."""
    names = [d.name for d in space.decisions]
    wanted = [d.name for d in FUSE_IMAGE_SPACE.decisions]
    missing = [n for n in wanted if n not in names]
    extra = [n for n in names if n not in wanted]
    if missing or extra:
        raise SearchSpaceError(f"space {space.name!r}: a FUSE candidate space needs exactly the decisions {wanted}; "
                               f"missing {missing}, unknown {extra}")
    for d in space.decisions:
        if d.condition is not None:
            raise SearchSpaceError(f"space {space.name!r}: decision {d.name!r} is conditional; FUSE spaces are not")
        for value in d.choices:
            _check_value(d.name, value, f"space {space.name!r}")


def _check_value(name: str, value: Any, where: str) -> None:
    ok = {
        "architecture": lambda v: v in ARCHITECTURES,
        "activation": lambda v: v in ACTIVATIONS,
        "layers": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16,
        "width": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096,
        "dropout": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1,
        "learning_rate": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 10,
    }[name]
    if not ok(value):
        allowed = {"architecture": sorted(ARCHITECTURES), "activation": sorted(ACTIVATIONS),
                   "layers": "an integer in 1..16", "width": "an integer in 1..4096",
                   "dropout": "a number in [0, 1)", "learning_rate": "a number in (0, 10]"}[name]
        raise SearchSpaceError(f"{where}: decision {name!r} has choice {value!r}; allowed: {allowed}")


# -- candidates -----------------------------------------------------------------------------------


class Candidate(nn.Module):
    """`layers` blocks (Linear or same-padded Conv2d, activation, dropout) and a linear head.
    Input [B, 1, S, S] pixels in [0, 1]; output [B, num_classes] logits."""

    def __init__(self, config: dict[str, Any], image_size: int, num_classes: int):
        super().__init__()
        for name in ("architecture", "layers", "width", "activation", "dropout"):
            if name not in config:
                raise SearchSpaceError(f"candidate configuration lacks decision {name!r}: {config}")
            _check_value(name, config[name], "candidate configuration")
        kernel = ARCHITECTURES[config["architecture"]]
        width, blocks = int(config["width"]), []
        fan_in = 1 if kernel else image_size * image_size
        for _ in range(int(config["layers"])):
            layer = nn.Conv2d(fan_in, width, kernel, padding=kernel // 2) if kernel else nn.Linear(fan_in, width)
            blocks += [layer, ACTIVATIONS[config["activation"]](), nn.Dropout(float(config["dropout"]))]
            fan_in = width
        self.convolutional = kernel > 0
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width * image_size * image_size if kernel else width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 1, S, S]
        h = self.body(x if self.convolutional else x.flatten(1))  # [B, W, S, S] or [B, W]
        return self.head(h.flatten(1))  # [B, num_classes]


def build_candidate(config: dict[str, Any], image_size: int, num_classes: int, seed: int) -> Candidate:
    """The candidate network of `config`, its initialization fixed by `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Candidate(config, image_size, num_classes)


# -- data -----------------------------------------------------------------------------------------


@dataclass
class ImageSplits:
    """An image task as FUSE sees it: pooled pixels [n, 1, S, S] and labels [n] per split."""

    name: str
    num_classes: int
    image_size: int
    x: dict[str, torch.Tensor]  # split -> [n, 1, S, S] float32
    y: dict[str, torch.Tensor]  # split -> [n] int64


def image_splits(task, image_size: int = 8) -> ImageSplits:
    """An `ImageTask` (tasks/images.py) average-pooled to image_size x image_size."""
    from transfer_automl.tasks.images import pool_images

    if image_size < 1:
        raise ConfigError(f"image_size must be >= 1, got {image_size}")
    pooled = pool_images(task.pixels, task.height, task.width, image_size).reshape(-1, 1, image_size, image_size)
    labels = np.asarray(task.labels, dtype=np.int64)
    x = {s: torch.from_numpy(np.ascontiguousarray(pooled[rows])) for s, rows in task.splits.items()}
    y = {s: torch.from_numpy(labels[rows]) for s, rows in task.splits.items()}
    return ImageSplits(task.name, len(task.classes), image_size, x, y)


def load_image_splits(name: str, data_dir: str | Path | None = None, image_size: int = 8) -> ImageSplits:
    from transfer_automl.tasks.images import load_image_task

    return image_splits(load_image_task(name, data_dir), image_size)


# -- one candidate alone (the image child of a single-trial search) -------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """How a candidate trains: alone (`train_candidate`) and in a FUSE round alike."""

    steps: int = 150  # weight steps (a FUSE round alternates each with one alpha step)
    batch_size: int = 64  # rows per step
    eval_rows: int = 2000  # at most this many rows of validation / test are scored

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rows: int) -> float:
    model.eval()
    correct = (model(x[:rows]).argmax(dim=1) == y[:rows]).sum().item()
    return float(correct) / max(1, min(rows, len(y)))


def train_candidate(config: dict[str, Any], data: ImageSplits, train: TrainConfig = TrainConfig(),
                    seed: int = 0) -> dict[str, float]:
    """Train one candidate alone with cross-entropy; {val_accuracy, test_accuracy, duration_s}."""
    started = time.perf_counter()
    model = build_candidate(config, data.image_size, data.num_classes, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(config["learning_rate"]))
    generator = torch.Generator().manual_seed(seed)
    x, y = data.x["train"], data.y["train"]
    model.train()
    for _ in range(train.steps):
        idx = torch.randint(len(x), (min(train.batch_size, len(x)),), generator=generator)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {
        "val_accuracy": accuracy(model, data.x["validation"], data.y["validation"], train.eval_rows),
        "test_accuracy": accuracy(model, data.x["test"], data.y["test"], train.eval_rows),
        "duration_s": time.perf_counter() - started,
    }


# -- one FUSE round -------------------------------------------------------------------------------


def mixture_nll(models: list[nn.Module], alpha: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-mean log sum_c softmax(alpha)_c p_c(y | x): the loss of eq. 4's relaxed output."""
    log_p = torch.stack([F.log_softmax(m(x), dim=1) for m in models])  # [C, B, K]
    log_w = F.log_softmax(alpha, dim=0)  # [C]
    log_mix = torch.logsumexp(log_w[:, None, None] + log_p, dim=0)  # [B, K]
    return F.nll_loss(log_mix, y)


def fuse_round(models: list[nn.Module], learning_rates: list[float], data: ImageSplits, train: TrainConfig,
               alpha_lr: float = 0.05, seed: int = 0) -> torch.Tensor:
    """Alternate `train.steps` weight steps (train batches, alpha frozen) with alpha steps
    (validation batches, weights frozen); returns alpha [C]. Pure: models come in initialized."""
    if len(models) != len(learning_rates):
        raise ConfigError(f"{len(models)} candidates but {len(learning_rates)} learning rates")
    alpha = torch.zeros(len(models), requires_grad=True)  # softmax(0) = 1/|C|
    weights = torch.optim.Adam([{"params": m.parameters(), "lr": lr} for m, lr in zip(models, learning_rates, strict=True)])
    alpha_opt = torch.optim.Adam([alpha], lr=alpha_lr)
    generator = torch.Generator().manual_seed(seed)
    xt, yt, xv, yv = data.x["train"], data.y["train"], data.x["validation"], data.y["validation"]
    for _ in range(train.steps):
        for m in models:
            m.train()
        idx = torch.randint(len(xt), (min(train.batch_size, len(xt)),), generator=generator)
        loss = mixture_nll(models, alpha.detach(), xt[idx], yt[idx])  # (i) alpha frozen
        weights.zero_grad(set_to_none=True)
        loss.backward()
        weights.step()
        for m in models:
            m.eval()
        idx = torch.randint(len(xv), (min(train.batch_size, len(xv)),), generator=generator)
        with torch.no_grad():
            log_p = torch.stack([F.log_softmax(m(xv[idx]), dim=1) for m in models])  # (ii) weights frozen
        log_mix = torch.logsumexp(F.log_softmax(alpha, dim=0)[:, None, None] + log_p, dim=0)
        alpha_opt.zero_grad(set_to_none=True)
        F.nll_loss(log_mix, yv[idx]).backward()
        alpha_opt.step()
    return alpha.detach()


# -- the search -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FuseSettings:
    """One `taml fuse` run (logged whole in best.json)."""

    task: str  # an image task (tasks/images.py): <source>, <source>:is<d>, <source>:odd_even
    out: str  # directory for candidates.parquet and best.json
    space: str = "fuse-image"  # built-in fuse-image or a space file with its decisions
    candidates: int = 4  # C: networks trained jointly per round (c* and C - 1 new ones)
    budget: int = 20  # candidate trainings in all; rounds = budget // candidates
    patience: int = 0  # stop when c* is unchanged for this many rounds in a row (0: never)
    steps: int = 150  # weight steps per round (each followed by one alpha step)
    batch_size: int = 64
    alpha_lr: float = 0.05  # Adam step size of alpha
    image_size: int = 8  # images are average-pooled to image_size x image_size
    eval_rows: int = 2000
    seed: int = 0
    data_dir: str | None = None  # image directory (default $TAML_IMAGE_DIR or ../shared/data/images)

    def validate(self) -> None:
        if self.candidates < 2:
            raise ConfigError(f"candidates must be >= 2 (FUSE compares candidates), got {self.candidates}")
        if self.budget < self.candidates:
            raise ConfigError(f"budget ({self.budget} candidate trainings) must be >= candidates ({self.candidates})")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience}")
        if not (self.alpha_lr > 0 and math.isfinite(self.alpha_lr)):
            raise ConfigError(f"alpha_lr must be a positive number, got {self.alpha_lr}")
        if self.image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {self.image_size}")
        TrainConfig(self.steps, self.batch_size, self.eval_rows)

    @property
    def rounds(self) -> int:
        return self.budget // self.candidates


@dataclass
class FuseResult:
    best: dict[str, Any]  # the final c*: config, val/test accuracy (scored alone after its last round), round
    rows: list[dict[str, Any]]  # one per candidate per round (the ledger)
    rounds: int
    wall_s: float
    ledger: Path | None = None
    best_file: Path | None = None


def sample_configs(space: SearchSpace, n: int, generator: torch.Generator) -> list[dict[str, Any]]:
    columns = [torch.randint(c, (n,), generator=generator) for c in space.cardinalities]  # each [n]
    return [space.decode([int(col[i]) for col in columns]) for i in range(n)]


def fuse_search(settings: FuseSettings, data: ImageSplits, space: SearchSpace,
                progress=None) -> FuseResult:
    """Rounds of FUSE on `data`; returns the ledger rows and the final c* (writes nothing)."""
    settings.validate()
    check_space(space)
    started = time.perf_counter()
    train = TrainConfig(settings.steps, settings.batch_size, settings.eval_rows)
    generator = torch.Generator().manual_seed(settings.seed)
    configs = sample_configs(space, settings.candidates, generator)
    rows: list[dict[str, Any]] = []
    best_row: dict[str, Any] = {}
    unchanged, previous = 0, None
    rounds_run = 0
    for r in range(settings.rounds):
        t0 = time.perf_counter()
        round_seed = settings.seed * 100_003 + r * 101
        models = [build_candidate(c, data.image_size, data.num_classes, round_seed + i) for i, c in enumerate(configs)]
        alpha = fuse_round(models, [float(c["learning_rate"]) for c in configs], data, train,
                           alpha_lr=settings.alpha_lr, seed=round_seed)
        weight = torch.softmax(alpha, dim=0)
        winner = int(torch.argmax(alpha))
        duration = time.perf_counter() - t0
        for i, (config, model) in enumerate(zip(configs, models, strict=True)):
            rows.append({
                "task": data.name, "round": r, "slot": i, "config": json.dumps(config, sort_keys=True),
                "kept": r > 0 and i == 0, "selected": i == winner,
                "alpha": float(alpha[i]), "weight": float(weight[i]),
                "val_accuracy": accuracy(model, data.x["validation"], data.y["validation"], train.eval_rows),
                "test_accuracy": accuracy(model, data.x["test"], data.y["test"], train.eval_rows),
                "round_duration_s": duration, "seed": settings.seed,
            })
        best_row = rows[-len(configs) + winner]
        rounds_run = r + 1
        key = best_row["config"]
        unchanged = unchanged + 1 if key == previous else 0
        previous = key
        if progress is not None:
            progress(f"round {r + 1}/{settings.rounds}: c* = {key} (weight {best_row['weight']:.2f}, "
                     f"val {best_row['val_accuracy']:.4f})")
        if settings.patience and unchanged >= settings.patience:
            break
        # Keep c* in slot 0, resample the rest from the space.
        configs = [configs[winner], *sample_configs(space, settings.candidates - 1, generator)]
    best = {"config": json.loads(best_row["config"]), "val_accuracy": best_row["val_accuracy"],
            "test_accuracy": best_row["test_accuracy"], "weight": best_row["weight"], "round": best_row["round"]}
    return FuseResult(best=best, rows=rows, rounds=rounds_run, wall_s=time.perf_counter() - started)


def run_fuse(settings: FuseSettings, progress=None) -> FuseResult:
    """Load the task and space, run FUSE, write `<out>/candidates.parquet` and `<out>/best.json`.
    Every input is checked before anything is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from transfer_automl.storage import atomic_write

    settings.validate()
    space = get_fuse_space(settings.space)
    data = load_image_splits(settings.task, settings.data_dir, settings.image_size)
    result = fuse_search(settings, data, space, progress=progress)
    out = Path(settings.out)
    table = pa.Table.from_pylist(result.rows)
    result.ledger = atomic_write(out / LEDGER_FILE, lambda tmp: pq.write_table(table, tmp))
    body = {"task": settings.task, "space": space.to_dict(), "settings": asdict(settings), "rounds": result.rounds,
            "candidate_trainings": len(result.rows), "wall_s": result.wall_s, "best": result.best}
    result.best_file = atomic_write(out / BEST_FILE,
                                    lambda tmp: Path(tmp).write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8"))
    return result

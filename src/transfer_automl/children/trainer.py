"""Train one child for one (task, configuration) and report validation and test accuracy.

Frozen-module children read cached features, so they train in about a second on CPU; children
that fine-tune a word table train an EmbeddingBag initialised from it. Both towers train with
Proximal Adagrad on batches of `batch_size` (100, as in the papers): the deep tower with its
learning rate and L2 weight, the wide tower with its learning rate and L1 weight.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from transfer_automl.children.device import pick_device
from transfer_automl.children.embeddings import TableInput, get_module
from transfer_automl.children.model import WideDeepClassifier
from transfer_automl.children.optim import ProximalAdagrad
from transfer_automl.children.spec import ChildSpec, child_spec
from transfer_automl.children.tokens import TokenBags, compact, hashed_unigram_bags
from transfer_automl.errors import ConfigError
from transfer_automl.tasks.features import FeatureCache
from transfer_automl.tasks.text import TextTask
from transfer_automl.trial_status import (
    STATUS_DIVERGED,
    STATUS_FAILED,
    STATUS_INVALID,
    STATUS_OK,
    STATUS_TIMEOUT,
)


@dataclass(frozen=True)
class ChildTrainerConfig:
    batch_size: int = 100  # examples per step (papers: 100)
    budget_scale: float = 0.05  # multiplies the space's training budget; 1.0 = the papers' budget
    wide_buckets: int = 1 << 18  # hash buckets of the wide tower's one-hot token features
    eval_batch_size: int = 4096
    device: str = "auto"  # auto = cuda when available
    # Seconds a trial may take (None: no limit). Checked between training steps, so a slow child
    # is stopped within one step; a child stuck inside one native call (or in feature
    # extraction) is not interrupted: that would need a process-level watchdog.
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.budget_scale > 0:
            raise ConfigError(f"budget_scale must be > 0, got {self.budget_scale}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0 (or None for no limit), got {self.timeout_s}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ChildResult:
    status: str
    val_accuracy: float
    test_accuracy: float
    train_steps: int
    duration_s: float
    error: str = ""


class TextChildTrainer:
    """`train(config, task, seed) -> ChildResult` for text tasks."""

    def __init__(self, config: ChildTrainerConfig, cache: FeatureCache):
        self.config = config
        self.cache = cache
        self.device = pick_device(config.device)
        self._tables: dict[tuple[str, str], TableInput] = {}
        self._wide: dict[str, tuple[TokenBags, int]] = {}

    def train(self, config: dict[str, Any], task: TextTask, seed: int = 0) -> ChildResult:
        started = time.perf_counter()
        spec = child_spec(config, self.config.budget_scale, self.config.batch_size)
        problem = self._invalid_reason(spec)
        if problem:
            return ChildResult(STATUS_INVALID, 0.0, 0.0, 0, time.perf_counter() - started, problem)
        try:
            return self._train(spec, task, seed, started)
        except (RuntimeError, ValueError, MemoryError) as exc:
            return ChildResult(STATUS_FAILED, 0.0, 0.0, 0, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")

    def _invalid_reason(self, spec: ChildSpec) -> str:
        if not spec.use_deep and not spec.use_wide:
            return "both the deep and the wide tower are disabled"
        if spec.use_deep:
            module = get_module(spec.input_module)
            if not module.is_installed():
                return f"input module {module.name!r} is not installed (package {module.package})"
            if spec.fine_tune and not module.fine_tunable:
                return f"input module {module.name!r} cannot be fine-tuned"
        return ""

    # -- inputs -------------------------------------------------------------------------------

    def _table(self, task: TextTask, module_name: str) -> TableInput:
        key = (task.content_hash, module_name)
        if key not in self._tables:
            self._tables[key] = get_module(module_name).table_input(task.texts)
        return self._tables[key]

    def _wide_bags(self, task: TextTask) -> tuple[TokenBags, int]:
        if task.content_hash not in self._wide:
            bags, used = compact(hashed_unigram_bags(task.texts, self.config.wide_buckets))
            self._wide[task.content_hash] = (bags, len(used))
        return self._wide[task.content_hash]

    def _batch(self, rows: np.ndarray, spec: ChildSpec, features, table, wide) -> dict[str, torch.Tensor]:
        dev = self.device
        batch: dict[str, torch.Tensor] = {}
        if spec.use_deep:
            if table is not None:
                ids, offsets = table.bags.select(rows)
                batch["ids"] = torch.from_numpy(ids).to(dev)
                batch["offsets"] = torch.from_numpy(offsets).to(dev)
            else:
                batch["features"] = torch.from_numpy(features[rows]).to(dev)
        if spec.use_wide:
            ids, offsets = wide.select(rows)
            batch["wide_ids"] = torch.from_numpy(ids).to(dev)
            batch["wide_offsets"] = torch.from_numpy(offsets).to(dev)
        return batch

    # -- training -----------------------------------------------------------------------------

    def _train(self, spec: ChildSpec, task: TextTask, seed: int, started: float) -> ChildResult:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        module = get_module(spec.input_module) if spec.use_deep else None
        features = table = None
        if module is not None:
            if spec.fine_tune:
                table = self._table(task, module.name)
            else:
                features = self.cache.get(task, module.name, module.features)
        wide, wide_vocab = self._wide_bags(task) if spec.use_wide else (None, 0)

        model = WideDeepClassifier(
            spec, module.dimension if module else 0, task.num_classes,
            table.weights if table is not None else None, wide_vocab,
        ).to(self.device)
        groups = []
        if spec.use_deep:
            groups.append({"params": model.deep_parameters(), "lr": spec.deep_lr, "l2": spec.deep_l2, "l1": 0.0})
        if spec.use_wide:
            groups.append({"params": model.wide_parameters(), "lr": spec.wide_lr, "l1": spec.wide_l1, "l2": 0.0})
        optimizer = ProximalAdagrad(groups)
        loss_fn = nn.CrossEntropyLoss()
        labels = torch.from_numpy(task.labels).to(self.device)

        train_rows = task.splits["train"]
        batch_size = min(self.config.batch_size, len(train_rows))
        order, cursor = rng.permutation(train_rows), 0
        model.train()
        deadline = started + self.config.timeout_s if self.config.timeout_s is not None else math.inf
        for step in range(spec.train_steps):
            if time.perf_counter() > deadline:
                return ChildResult(STATUS_TIMEOUT, 0.0, 0.0, step, time.perf_counter() - started,
                                   f"stopped after {self.config.timeout_s:g} s (trial timeout) at step {step} "
                                   f"of {spec.train_steps}")
            if cursor + batch_size > len(order):
                order, cursor = rng.permutation(train_rows), 0
            rows = order[cursor : cursor + batch_size]
            cursor += batch_size
            logits = model(self._batch(rows, spec, features, table, wide))
            loss = loss_fn(logits, labels[torch.from_numpy(rows).to(self.device)])
            if not math.isfinite(loss.item()):
                return ChildResult(STATUS_DIVERGED, 0.0, 0.0, step, time.perf_counter() - started,
                                   f"training loss became non-finite at step {step}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        model.eval()
        val = self._accuracy(model, task, "validation", spec, features, table, wide, labels)
        test = self._accuracy(model, task, "test", spec, features, table, wide, labels)
        return ChildResult(STATUS_OK, val, test, spec.train_steps, time.perf_counter() - started)

    @torch.no_grad()
    def _accuracy(self, model, task, split, spec, features, table, wide, labels) -> float:
        rows = task.splits[split]
        correct = 0
        for start in range(0, len(rows), self.config.eval_batch_size):
            chunk = rows[start : start + self.config.eval_batch_size]
            logits = model(self._batch(chunk, spec, features, table, wide))
            correct += int((logits.argmax(-1) == labels[torch.from_numpy(chunk).to(self.device)]).sum())
        return correct / len(rows)

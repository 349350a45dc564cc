"""The training and evaluation loop every child shares (text, image, fine-tuned or frozen).

`fit` runs `steps` Proximal Adagrad steps on batches drawn without replacement from the train
rows (a fresh permutation per epoch) and stops early on a non-finite loss (status diverged) or
past the deadline (status timeout). A child whose weights end non-finite is diverged too: its
predictions would be argmax over NaN, an accuracy that means nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from transfer_automl.children.optim import ProximalAdagrad
from transfer_automl.children.spec import ChildSpec
from transfer_automl.trial_status import STATUS_DIVERGED, STATUS_OK, STATUS_TIMEOUT

BatchFn = Callable[[np.ndarray], dict[str, Tensor]]  # rows -> model inputs


def proximal_adagrad_for(model: nn.Module, spec: ChildSpec) -> ProximalAdagrad:
    """Deep tower: its learning rate and L2; wide tower: its learning rate and L1."""
    groups = []
    if spec.use_deep:
        groups.append({"params": model.deep_parameters(), "lr": spec.deep_lr, "l2": spec.deep_l2, "l1": 0.0})
    if spec.use_wide:
        groups.append({"params": model.wide_parameters(), "lr": spec.wide_lr, "l1": spec.wide_l1, "l2": 0.0,
                       "sparse_rows": True})
    return ProximalAdagrad(groups)


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, make_batch: BatchFn, labels: Tensor,
        train_rows: np.ndarray, steps: int, batch_size: int, rng: np.random.Generator,
        deadline: float = math.inf, timeout_s: float | None = None,
        position: dict | None = None) -> tuple[str, int, str]:
    """Train in place; returns (status, steps done, reason).

    `position` makes training resumable: when it holds "order" and "cursor" (the epoch's
    permutation and the next row in it, as a previous call left them), training continues there
    instead of drawing a new permutation; on return it holds where this call stopped. With the
    same `rng`, torch generator, model and optimizer state, n steps then m more steps are the
    n + m steps of one call (children/trainer.py: a promoted child continues its parent)."""
    loss_fn = nn.CrossEntropyLoss()
    batch_size = min(batch_size, len(train_rows))
    if position is not None and "order" in position:
        order, cursor = np.asarray(position["order"]), int(position["cursor"])
    else:
        order, cursor = rng.permutation(train_rows), 0
    if position is not None:
        position["order"], position["cursor"] = order, cursor
    model.train()
    for step in range(steps):
        if time.perf_counter() > deadline:
            return STATUS_TIMEOUT, step, f"stopped after {timeout_s:g} s (trial timeout) at step {step} of {steps}"
        if cursor + batch_size > len(order):
            order, cursor = rng.permutation(train_rows), 0
        rows = order[cursor : cursor + batch_size]
        cursor += batch_size
        if position is not None:
            position["order"], position["cursor"] = order, cursor
        loss = loss_fn(model(make_batch(rows)), labels[torch.from_numpy(rows).to(labels.device)])
        if not math.isfinite(loss.item()):
            return STATUS_DIVERGED, step, f"training loss became non-finite at step {step}"
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    bad = next((name for name, p in model.named_parameters() if not torch.isfinite(p).all()), None)
    if bad is not None:
        return STATUS_DIVERGED, steps, f"weights became non-finite ({bad}) after step {steps}"
    return STATUS_OK, steps, ""


@torch.no_grad()
def accuracy(model: nn.Module, make_batch: BatchFn, rows: np.ndarray, labels: Tensor, batch_size: int) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        logits = model(make_batch(chunk))
        correct += int((logits.argmax(-1) == labels[torch.from_numpy(chunk).to(labels.device)]).sum())
    return correct / len(rows)

"""Early stopping on validation: evaluate every so often, keep the best weights, stop after a patience.

The champion refit (study/refit.py) trains a configuration for its full training budget, up to 20
times the steps the search gave it; on a small task the extra steps can overfit. So the refit
scores the validation split `evaluations` times over its budget (every ceil(steps / evaluations)
steps, and always at the last step), keeps a copy of the weights with the best
validation accuracy so far, and stops once `patience` evaluations in a row brought no strictly
better one (Prechelt 1998, "Early stopping - but when?"; the rule Keras' EarlyStopping with
restore_best_weights implements). The test split is never read here: the caller scores it once, on
the kept weights.

A child whose loss turns non-finite, or that runs past its deadline, after at least one evaluation
keeps the best weights it had: that is where early stopping would have left it anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from transfer_automl.children.loop import accuracy, fit
from transfer_automl.errors import ConfigError
from transfer_automl.trial_status import STATUS_OK


@dataclass(frozen=True)
class EarlyStopping:
    """When to evaluate and when to give up."""

    evaluations: int = 20  # validation evaluations over the whole budget (fewer when it stops early)
    patience: int = 5  # evaluations in a row without a strictly better validation accuracy, then stop

    def every(self, steps: int) -> int:
        """Training steps between two evaluations for a budget of `steps`."""
        return max(1, math.ceil(steps / self.evaluations))

    def __post_init__(self) -> None:
        for name in ("evaluations", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"early stopping {name} must be an integer >= 1, got {value!r}")


class BestWeights:
    """The best validation accuracy seen, the step it was seen at and a CPU copy of those weights."""

    def __init__(self, rule: EarlyStopping):
        self.rule = rule
        self.val_accuracy = -math.inf
        self.step = 0
        self.state: dict[str, torch.Tensor] | None = None
        self.evaluations_since_best = 0

    def observe(self, step: int, val_accuracy: float, model: nn.Module) -> bool:
        """Record an evaluation; True when the patience has run out (stop training)."""
        if val_accuracy > self.val_accuracy:  # strictly better: the earlier of equal weights is kept
            self.val_accuracy, self.step, self.evaluations_since_best = val_accuracy, step, 0
            self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            self.evaluations_since_best += 1
        return self.evaluations_since_best >= self.rule.patience

    def restore(self, model: nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def fit_with_early_stopping(model: nn.Module, optimizer: Any, make_batch: Any, labels: torch.Tensor,
                            splits: dict[str, np.ndarray], steps: int, batch_size: int, rng: np.random.Generator,
                            rule: EarlyStopping, eval_batch: int, deadline: float = math.inf,
                            timeout_s: float | None = None) -> tuple[str, int, str, BestWeights]:
    """Train up to `steps` in chunks of `rule.every(steps)` (the last chunk ends at `steps`, so the
    full run is always evaluated), then load the best weights into `model`.

    Returns (status, steps run, reason, best). The chunks continue one batch order (children/loop.py
    `fit` with a `position`), so the steps run are those of one uninterrupted run."""
    best = BestWeights(rule)
    position: dict[str, Any] = {}
    done, status, reason, every = 0, STATUS_OK, "", rule.every(steps)
    while done < steps:
        status, ran, reason = fit(model, optimizer, make_batch, labels, splits["train"], min(every, steps - done), batch_size,
                                  rng, deadline, timeout_s, position)
        done += ran
        if status != STATUS_OK:
            break
        if best.observe(done, accuracy(model, make_batch, splits["validation"], labels, eval_batch), model):
            break
    if best.state is None:
        return status, done, reason, best
    best.restore(model)
    return STATUS_OK, done, "", best

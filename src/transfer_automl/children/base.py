"""The `ChildTrainer` interface and the `ChildResult` every trainer returns.

A child trainer turns one (configuration, task) pair into a validation and a test accuracy
(Syne Tune's trial backend): `TextChildTrainer` and `ImageChildTrainer` train a network
(children/trainer.py, children/images.py), `TableChildTrainer` looks the result up in a tabular
benchmark (children/table.py). Light: imports neither torch nor numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import nn


@dataclass
class ChildResult:
    status: str  # trial_status: ok, invalid (not trained), failed (the reason in `error`)
    val_accuracy: float
    test_accuracy: float
    train_steps: int
    duration_s: float
    error: str = ""
    model: nn.Module | None = None  # the trained child, only when train(..., keep_model=True)
    phases: dict[str, float] = field(default_factory=dict)  # seconds: features, train, evaluate
    state: dict[str, Any] | None = None  # the child's state to continue from, only when train(..., keep_state=True)
    # With early stopping (children/early_stopping.py): the steps the budget allowed, and the step
    # whose weights the child kept (its best validation accuracy); train_steps is the steps run.
    max_steps: int | None = None
    best_step: int | None = None


@runtime_checkable
class ChildTrainer(Protocol):
    """`train(config, task, seed=..., keep_model=...) -> ChildResult`.

    `task` is whatever the trainer's tasks are (a TextTask, an ImageTask, a benchmark task name);
    `seed` fixes the child's initialization and batch order; `keep_model` returns the trained
    network in `ChildResult.model` (None where there is none, e.g. a table lookup). A
    configuration the trainer cannot build ends `invalid`; an error inside the child ends
    `failed`; the search's own errors (TamlError) propagate."""

    def train(self, config: Mapping[str, Any], task: Any, seed: int = 0, keep_model: bool = False) -> ChildResult: ...

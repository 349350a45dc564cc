"""Per-task summaries of committed trials: best child and accuracy-topN.

Only children that trained to the end (status ok) count: an invalid or diverged configuration
is not a model anyone would deploy, so it never lowers or raises a task's figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from transfer_automl.rewards import accuracy_top_n
from transfer_automl.trial_status import STATUS_OK


@dataclass
class TaskSummary:
    task: str
    trials: int  # all trials of the task, invalid and diverged ones included
    trained: int  # trials whose child trained to the end (status ok): the ones summarized below
    best_val_accuracy: float
    best_test_accuracy: float  # test accuracy of the child with the best validation accuracy
    accuracy_top_n: float  # mean test accuracy of the top-N children by validation accuracy
    reference: str  # what the reference figures are: "majority class" (text) or "median cell" (table)
    reference_val: float
    reference_test: float
    best_config: dict[str, Any] = field(default_factory=dict)


class TaskHistory:
    """Running per-task (val, test) accuracies of trained children, fed round by round."""

    def __init__(self, rows: Iterable[dict[str, Any]] = ()):
        self.accuracies: dict[str, list[tuple[float, float]]] = {}
        self.add(rows)

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for r in rows:
            if r["status"] == STATUS_OK:
                self.accuracies.setdefault(r["task"], []).append((r["val_accuracy"], r["test_accuracy"]))

    def metrics(self, task: str, top_n: int) -> dict[str, float]:
        """reward/<task>/{best_val_accuracy, accuracy_top<N>}, empty before the first child."""
        acc = self.accuracies.get(task, [])
        if not acc:
            return {}
        return {
            f"reward/{task}/best_val_accuracy": max(v for v, _ in acc),
            f"reward/{task}/accuracy_top{top_n}": accuracy_top_n([v for v, _ in acc], [t for _, t in acc], top_n),
        }


def summarize(rows: list[dict[str, Any]], tasks: Iterable[str], references: dict[str, Any],
              top_n: int = 10) -> list[TaskSummary]:
    """One summary per task from ledger rows; `references[task]` has `name`, `val`, `test`."""
    out = []
    for task in tasks:
        ref = references[task]
        all_mine = [r for r in rows if r["task"] == task]
        mine = [r for r in all_mine if r["status"] == STATUS_OK]
        best = max(mine, key=lambda r: r["val_accuracy"], default=None)
        out.append(TaskSummary(
            task=task, trials=len(all_mine), trained=len(mine),
            best_val_accuracy=best["val_accuracy"] if best else float("nan"),
            best_test_accuracy=best["test_accuracy"] if best else float("nan"),
            accuracy_top_n=accuracy_top_n([r["val_accuracy"] for r in mine], [r["test_accuracy"] for r in mine], top_n),
            reference=ref.name, reference_val=ref.val, reference_test=ref.test,
            best_config=json.loads(best["config"]) if best else {},
        ))
    return out

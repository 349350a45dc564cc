"""Rewards from child results, and the accuracy-topN summary the papers report."""

from __future__ import annotations

from collections.abc import Sequence


def reward_from_accuracy(val_accuracy: float, power: float = 1.0) -> float:
    """Reward = validation accuracy ** power (1 in Transfer AutoML, 3 in MNMS)."""
    if power <= 0:
        raise ValueError(f"reward power must be positive, got {power}")
    return float(val_accuracy) ** power


def accuracy_top_n(val_accuracies: Sequence[float], test_accuracies: Sequence[float], n: int = 10) -> float:
    """Mean test accuracy of the n children with the best validation accuracy (T-AML Table 3).

    Ties on validation accuracy keep trial order, so the result does not depend on sorting luck.
    Returns NaN when there are no children.
    """
    if len(val_accuracies) != len(test_accuracies):
        raise ValueError("val and test accuracies must have the same length")
    if not val_accuracies:
        return float("nan")
    order = sorted(range(len(val_accuracies)), key=lambda i: (-val_accuracies[i], i))[:n]
    return sum(test_accuracies[i] for i in order) / len(order)

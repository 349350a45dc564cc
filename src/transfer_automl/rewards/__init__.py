"""Rewards from child results, and the accuracy-topN summary the papers report."""

from __future__ import annotations

from collections.abc import Sequence


def reward_from_accuracy(val_accuracy: float, power: float = 1.0) -> float:
    """Reward = validation accuracy ** power (1 in Transfer AutoML, 3 in MNMS)."""
    if power <= 0:
        raise ValueError(f"reward power must be positive, got {power}")
    return float(val_accuracy) ** power


MNAS_WEIGHT = -0.07  # MnasNet's w for a soft constraint (Tan et al. 2019, section 3)
MIN_COST_S = 1e-3  # a cost below a millisecond (a table lookup) counts as one: (0 / T)^w is infinite


def cost_aware_reward(reward: float, cost_s: float, target_s: float, weight: float = MNAS_WEIGHT) -> float:
    """MnasNet's soft constraint (Tan et al. 2019, "MnasNet: Platform-Aware Neural Architecture
    Search for Mobile", eq. 2 with alpha = beta = w): R' = R x (cost / T)^w.

    R the accuracy reward, cost a child's seconds (study/cost.py's estimate), T the target seconds,
    w <= 0 the weight. A child at the target keeps its reward; with w = -0.07 one twice as costly
    loses about 5%, one half as costly gains about 5%, whatever the search method, so the search
    trades accuracy for cost smoothly instead of refusing children above a hard limit."""
    if not target_s > 0:
        raise ValueError(f"cost target must be positive seconds, got {target_s}")
    if not weight <= 0:
        raise ValueError(f"cost weight must be <= 0 (a penalty on cost), got {weight}")
    return float(reward) * (max(float(cost_s), MIN_COST_S) / target_s) ** weight


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

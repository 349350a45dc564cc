"""A child's expected cost in seconds, from its configuration and the times measured so far.

cost = rate(group) x work(config, budget), where the trainer says what a child's *work* is
(`GuardedChildTrainer.work`: steps x the deep tower's width, the group being the input module,
fine-tuned or frozen, and the towers) and the rate, seconds per unit of work, is fitted online
from the ledger: the median of duration / work over the group's children once it has
`MIN_SAMPLES`, else over every child. The median, not the mean: a group's first child also pays
for its frozen features, and one slow outlier would move a mean for the rest of the search. A
trainer without `work` (a table lookup) counts one unit per child.

The model is fitted on the committed rounds (so every runner, the `taml search` loop or a
pipeline's pods, estimates a trial alike). `Study.run_trial` records each child's estimate in its
ledger row (`expected_cost_s`, logged as `child/expected_cost_s` beside its duration) and warns when a child takes more than `SLOW_FACTOR` times it (and `MIN_SLOW_S` more); `taml search --time-budget` starts a
round only if the round's estimate fits the time left.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

MIN_SAMPLES = 2
SLOW_FACTOR = 3.0
MIN_SLOW_S = 1.0  # a child over its estimate by less than this is noise, not news


def child_work(trainer: Any, config: dict[str, Any], budget: float | None,
               from_budget: float | None = None) -> tuple[str, float]:
    """(group, work units) of training `config` from `from_budget` (a promotion's parent) to `budget`."""
    work = getattr(trainer, "work", None)
    if work is None:
        return "all", 1.0
    try:
        return work(config, budget, from_budget)
    except Exception:  # noqa: BLE001 - a configuration the trainer cannot read is estimated as one unit
        return "unreadable", 1.0


class CostModel:
    """Seconds per unit of work, per group, from observed children."""

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.rates: dict[str, list[float]] = {}

    def observe(self, config: dict[str, Any] | str, budget: float | None, duration_s: float,
                from_budget: float | None = None) -> None:
        if isinstance(config, str):
            config = json.loads(config)
        group, work = child_work(self.trainer, config, budget, from_budget)
        if work > 0 and duration_s >= 0:
            self.rates.setdefault(group, []).append(duration_s / work)

    def estimate(self, config: dict[str, Any], budget: float | None, from_budget: float | None = None) -> float | None:
        """Expected seconds, or None before any child was measured."""
        group, work = child_work(self.trainer, config, budget, from_budget)
        rates = self.rates.get(group, [])
        if len(rates) < MIN_SAMPLES:
            rates = [r for rs in self.rates.values() for r in rs]
        if not rates:
            return None
        return statistics.median(rates) * work

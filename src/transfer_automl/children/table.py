"""A child trainer that looks results up in a tabular benchmark instead of training.

Like Syne Tune's simulator backend: a search runs against `TableChildTrainer` exactly as against a
real trainer, but each "training" is an O(1) lookup, so search efficiency can be measured on
NAS-Bench-201 or TransNAS-Bench-101 in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from transfer_automl.children.base import ChildResult
from transfer_automl.errors import TaskError
from transfer_automl.space.decisions import SearchSpace
from transfer_automl.tasks.benchmarks import TableBenchmark
from transfer_automl.trial_status import STATUS_INVALID, STATUS_OK


class TableChildTrainer:
    """A `ChildTrainer` (children/base.py): `train(config, task, seed, keep_model) -> ChildResult` by
    table lookup.

    val_accuracy is the table's raw validation metric, test_accuracy its test metric (the
    validation metric where the table has none). The metric is whatever the table holds (a
    percentage, SSIM, a negative loss), always higher-is-better. `seed` is ignored: the tables
    hold seed-averaged results; so is `keep_model`: there is no model (`ChildResult.model` stays
    None). A configuration that fits the space but is missing from a sparse table ends with
    status "invalid" and the reason in `error`; one that does not fit the space raises
    SearchSpaceError, and an unknown task raises TaskError.
    """

    def __init__(self, benchmark: TableBenchmark):
        self.benchmark = benchmark

    @property
    def space(self) -> SearchSpace:
        return self.benchmark.space

    @property
    def tasks(self) -> list[str]:
        return list(self.benchmark.tasks)

    def train(self, config: Mapping[str, Any], task: str, seed: int = 0, keep_model: bool = False) -> ChildResult:
        started = time.perf_counter()
        if task not in self.benchmark.tasks:
            raise TaskError(
                f"unknown task {task!r} for benchmark {self.benchmark.name!r}; tasks: {self.benchmark.tasks}"
            )
        actions = self.benchmark.space.encode(config)
        try:
            row = self.benchmark.row(actions)
        except TaskError as exc:
            return ChildResult(STATUS_INVALID, 0.0, 0.0, 0, time.perf_counter() - started, str(exc))
        val = float(self.benchmark.all_values(task)[row])
        test_column = self.benchmark.test_metric.get(task)
        test = float(test_column[row]) if test_column is not None else val
        return ChildResult(STATUS_OK, val, test, 0, time.perf_counter() - started)

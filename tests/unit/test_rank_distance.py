"""rank_correlation: 1 - Spearman rho over the configurations two tasks both evaluated."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from transfer_automl.errors import ConfigError, TaskError
from transfer_automl.tasks.benchmarks import table_benchmark_from_file
from transfer_automl.transfer.distances import DISTANCES, RankCorrelation, spearman


def test_spearman_matches_hand_computed_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1, 2, 3) vs (1, 3, 2): 1 - 6 * (0 + 1 + 1) / (3 * 8) = 0.5
    assert spearman([1, 2, 3], [5, 9, 7]) == pytest.approx(0.5)
    # ties share their mean rank: (1.5, 1.5, 3) vs (1, 2, 3) -> Pearson of the ranks
    assert spearman([0, 0, 1], [1, 2, 3]) == pytest.approx(np.corrcoef([1.5, 1.5, 3], [1, 2, 3])[0, 1])
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_properties_zero_diagonal_symmetric_range_and_scale_blind():
    rng = np.random.default_rng(0)
    base = rng.normal(size=50)
    evaluations = {
        "a": dict(enumerate(base)),
        "a_rescaled": dict(enumerate(np.exp(3 * base) + 7)),  # same order, other metric scale
        "reversed": dict(enumerate(-base)),
        "noise": dict(enumerate(rng.normal(size=50))),
    }
    d = RankCorrelation(evaluations)
    m = d.matrix(["a", "a_rescaled", "reversed", "noise"]).mean
    assert np.allclose(np.diag(m), 0) and np.allclose(m, m.T)
    assert ((m >= 0) & (m <= 2)).all()
    assert m[0, 1] == pytest.approx(0.0)  # monotone transform: same ranking
    assert m[0, 2] == pytest.approx(2.0)  # reversed ranking
    assert 0.5 < m[0, 3] < 1.5  # unrelated: near 1
    assert d.distance("a", "noise") == pytest.approx(m[0, 3])


def test_only_shared_configurations_count():
    # a and b agree on configs 0..3; b's extra config 9 and a's extra config 8 are ignored.
    d = RankCorrelation({"a": {0: 1, 1: 2, 2: 3, 3: 4, 8: 100}, "b": {0: 5, 1: 6, 2: 7, 3: 8, 9: -100}})
    assert d.distance("a", "b") == pytest.approx(0.0)
    too_few = RankCorrelation({"a": {0: 1, 1: 2}, "b": {0: 1, 1: 2, 2: 3}}, min_common=3)
    assert math.isnan(too_few.matrix(["a", "b"]).mean[0, 1])
    with pytest.raises(ConfigError, match="2 shared configurations"):
        too_few.distance("a", "b")


def test_from_ledger_uses_ok_trials_and_averages_repeats():
    def row(task, depth, value, status="ok"):
        return {"task": task, "config": json.dumps({"depth": depth}), "val_accuracy": value, "status": status}

    rows = [row("x", d, d) for d in range(4)] + [row("y", d, -d) for d in range(4)]
    rows += [row("y", 0, -10.0), row("x", 2, 99.0, status="failed")]  # y's config 0 averages to -5
    d = RankCorrelation.from_ledger(rows)
    assert d.evaluations["y"]['{"depth": 0}'] == pytest.approx(-5.0)
    assert d.evaluations["x"]['{"depth": 2}'] == 2.0
    # y: depth 0 -> -5, 1 -> -1, 2 -> -2, 3 -> -3: ranks (1, 4, 3, 2) vs x's (1, 2, 3, 4)
    assert d.distance("x", "y") == pytest.approx(1 - spearman([0, 1, 2, 3], [-5, -1, -2, -3]))


def test_from_table_on_a_benchmark_and_bad_names(toy_table):
    bench = table_benchmark_from_file(toy_table, metric_columns=["t1", "t2"])
    d = RankCorrelation.from_table(bench)
    expected = 1 - spearman(bench.metric["t1"], bench.metric["t2"])
    assert d.distance("t1", "t2") == pytest.approx(expected)
    assert d.distance("t1", "t2") > 1  # t1 rises with depth, t2 falls
    on_rows = RankCorrelation.from_table(bench, rows=[0, 2, 4])
    assert len(on_rows.evaluations["t1"]) == 3
    with pytest.raises(TaskError, match="nope"):
        d.matrix(["t1", "nope"])
    with pytest.raises(ConfigError, match="non-finite"):
        RankCorrelation({"a": {0: float("nan")}})
    assert DISTANCES["rank_correlation"] is RankCorrelation

"""rank-ensemble: its maths helpers against explicit computations, reading sources, transfer that
follows the predictive source and drops the misleading one, and a resumed search that continues
exactly as an uninterrupted one (the interface suite in test_search_interface.py covers the rest)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from transfer_automl.errors import ConfigError
from transfer_automl.search import make_search
from transfer_automl.search.rank_ensemble import (
    bootstrap_weights,
    copula_values,
    kernel_ridge,
    loo_predictions,
    matches,
    pair_kernel,
    read_sources,
)
from transfer_automl.space import Decision, SearchSpace
from transfer_automl.study import Study
from transfer_automl.tracking import Tracker

SPACE = SearchSpace("re-toy", tuple(Decision(f"d{i}", (0, 1, 2)) for i in range(4)))
CONFIGS = [list(c) for c in itertools.product(range(3), repeat=4)]  # all 81


def f(actions) -> float:
    """An additive function with one interaction; its best is (2, 0, 1, 2)."""
    a = actions
    return (a[0] == 2) * 1.0 + (a[1] == 0) * 0.8 + (a[2] == 1) * 0.6 + (a[3] == 2) * 0.4 + 0.3 * (a[0] == 2) * (a[3] == 2)


def test_copula_values_are_normal_scores_of_average_ranks():
    z = copula_values(np.array([3.0, 1.0, 2.0, 2.0]))
    from statistics import NormalDist

    inv = NormalDist().inv_cdf
    assert z == pytest.approx([inv(4 / 5), inv(1 / 5), inv(2.5 / 5), inv(2.5 / 5)])
    assert copula_values(np.array([10.0, -5.0, 7.0])) == pytest.approx(copula_values(np.array([1e6, 0.0, 1.0])))


def test_pair_kernel_ridge_is_ridge_on_one_hot_main_effects_and_pairs():
    rng = np.random.default_rng(0)
    x = np.array(CONFIGS)[rng.choice(81, 20, replace=False)]
    y = rng.standard_normal(20)

    def features(a):
        cols = [np.ones((len(a), 1))] + [np.eye(3)[a[:, d]] for d in range(4)]
        cols += [np.eye(9)[a[:, i] * 3 + a[:, j]] for i, j in itertools.combinations(range(4), 2)]
        return np.hstack(cols)

    phi = features(x)
    w = np.linalg.solve(phi.T @ phi + 0.7 * np.eye(phi.shape[1]), phi.T @ y)  # primal ridge
    alpha = kernel_ridge(pair_kernel(matches(x, x)), y, 0.7)
    grid = np.array(CONFIGS)
    assert pair_kernel(matches(grid, x)) @ alpha == pytest.approx(features(grid) @ w, abs=1e-8)


def test_loo_predictions_equal_refits_without_each_point():
    rng = np.random.default_rng(1)
    x = np.array(CONFIGS)[rng.choice(81, 8, replace=False)]
    z = rng.standard_normal(8)
    k = pair_kernel(matches(x, x))
    expected = []
    for i in range(8):
        keep = np.arange(8) != i
        alpha = kernel_ridge(k[np.ix_(keep, keep)], z[keep], 2.0)
        expected.append(k[i, keep] @ alpha)
    assert loo_predictions(k, z, 2.0) == pytest.approx(expected, abs=1e-9)


def test_bootstrap_weights_go_to_the_model_that_ranks_best_and_ties_share():
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    preds = np.stack([y * 2, -y, y[::-1]])
    samples = torch.randint(5, (50, 5), generator=torch.Generator().manual_seed(0))
    w = bootstrap_weights(preds, y, samples)
    assert w[0] > 0.9 and w[1] < 0.1 and w.sum() == pytest.approx(1.0)
    assert bootstrap_weights(np.stack([y, y + 1]), y, samples) == pytest.approx([0.5, 0.5])


def _source_file(path: Path, tasks: dict[str, callable]) -> Path:
    rows = [{"task": t, "config": json.dumps(SPACE.decode(c), sort_keys=True), "val_accuracy": fn(c), "status": "ok"}
            for t, fn in tasks.items() for c in CONFIGS]
    rows.append({"task": "good", "config": json.dumps({"other": 1}), "val_accuracy": 9.0, "status": "ok"})
    rows.append({"task": "good", "config": json.dumps(SPACE.decode([2, 0, 1, 2])), "val_accuracy": 99.0,
                 "status": "failed"})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_it_follows_the_predictive_source_and_drops_the_misleading_one(tmp_path):
    sources = _source_file(tmp_path / "s.parquet", {"good": f, "bad": lambda c: -f(c)})
    data = read_sources(str(sources), SPACE)
    assert sorted(data) == ["bad", "good"] and len(data["good"]["actions"]) == 81  # foreign and failed rows skipped
    assert max(data["good"]["values"]) == pytest.approx(f([2, 0, 1, 2]))

    search = make_search("rank-ensemble", SPACE, ["target"], "t", seed=0, sources=str(sources))
    target = {tuple(c): 3 * f(c) + 1 for c in CONFIGS}  # the good source up to a monotone map
    best = max(target.values())
    found = None
    for n in range(1, 7):
        trial = search.ask(1)[0]
        search.tell([trial], [target[tuple(trial.actions)]])
        if target[tuple(trial.actions)] == best:
            found = n
            break
    assert found is not None and found <= 4
    w = search.weights(0)
    # "bad" wins only bootstrap samples where every model ties (one distinct value drawn)
    assert w["good"] > 0.5 and w["bad"] < 0.1


def test_without_sources_it_is_a_scratch_search_and_bad_sources_are_refused(tmp_path):
    search = make_search("rank-ensemble", SPACE, ["target"], "t", seed=3)
    for _ in range(5):
        trial = search.ask(1)[0]
        search.tell([trial], [f(trial.actions)])
    assert search.weights(0) == {"<target>": 1.0}
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pylist([{"task": "a", "config": "{}", "val_accuracy": 1.0}]), empty)
    with pytest.raises(ConfigError, match="no finished trial in space"):
        make_search("rank-ensemble", SPACE, ["t"], "t", sources=str(empty)).ask(1)
    with pytest.raises(ConfigError, match="source_ridge"):
        make_search("rank-ensemble", SPACE, ["t"], "t", source_ridge=0)


@pytest.fixture()
def table(tmp_path) -> Path:
    """64 configurations, three related tasks."""
    rows = []
    for a, b, c in itertools.product(range(4), repeat=3):
        base = (a == 1) + 0.7 * (b == 2) + 0.4 * (c == 3) + 0.2 * (a == 1) * (c == 3)
        rows.append({"a": a, "b": b, "c": c, "t1": base + 0.05 * c, "t2": 2 * base - 0.1 * b, "t3": base + 0.3 * (a == 0)})
    path = tmp_path / "toy3.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _run(table: Path, out: Path, **settings) -> None:
    """A search in `out` (no tracker), driven round by round as `taml search` drives it."""
    study = Study.open({"table": str(table), "metric_columns": ("t1", "t2", "t3"), "progress": False, **settings},
                       out, tracker=Tracker())
    for step in study.pending_rounds():
        trials = study.ask_round(step)
        study.tell_round(step, [study.run_trial(t) for t in trials])
    study.release()


def test_a_resumed_search_continues_exactly_as_an_uninterrupted_one(tmp_path, table):
    # The sources: an earlier search's directory (its ledger), as a user would pass it.
    _run(table, tmp_path / "earlier", tasks=("t1", "t3"), method="rs", trials=40)
    opts = {"tasks": ("t2",), "method": "rank-ensemble", "seed": 5, "batch_size": 1,
            "method_options": {"sources": str(tmp_path / "earlier")}}
    _run(table, tmp_path / "whole", trials=10, **opts)
    _run(table, tmp_path / "split", trials=4, **opts)
    (tmp_path / "moved").mkdir()
    (tmp_path / "earlier").rename(tmp_path / "moved" / "earlier")  # the checkpoint holds the sources
    _run(table, tmp_path / "split", init_from="resume", trials=10)

    def configs(out: Path) -> list[str]:
        rows = pq.read_table(out / "ledger").to_pylist()
        return [r["config"] for r in sorted(rows, key=lambda r: r["trial_id"])]

    whole = configs(tmp_path / "whole")
    assert len(whole) == 10 and len(set(whole)) == 10  # never the same configuration twice
    assert configs(tmp_path / "split") == whole
    body = Study.load(tmp_path / "split").search.state_dict()
    assert sorted(body["source_data"]) == ["t1", "t3"] and len(body["history"][0]["rewards"]) == 10

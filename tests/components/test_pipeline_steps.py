"""The pipeline steps, called directly: the same search as `run_search`, round by round."""

from __future__ import annotations

import json

import pytest
import torch

from transfer_automl.errors import ConfigError
from transfer_automl.search import Ledger, load_checkpoint
from transfer_automl.steps import pipeline_steps as steps
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchSettings
from transfer_automl.tracking import MemoryTracker

_VOLATILE = ("started_at", "ended_at", "duration_s")


def _run_pipeline_steps(search_dir, table, method, rounds, children, seed=3):
    first = steps.init_search(search_dir, (), method, None, seed, children_per_round=children, table=str(table),
                              metric_columns=("t1", "t2"), search_id="s")
    assert first == 0
    outputs = []
    for k in range(rounds):
        trials = steps.controller_step(search_dir, k, children)
        results = [steps.train_child(search_dir, t) for t in reversed(trials)]  # any order
        outputs.append(steps.aggregate_rewards(search_dir, k, results))
    return outputs


def _ledger_rows(path):
    return [{k: v for k, v in r.items() if k not in _VOLATILE} for r in Ledger(path / "ledger").read().to_pylist()]


def _assert_same(a, b, where="checkpoint"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


@pytest.mark.parametrize("method", ["reinforce", "pqt", "re", "tpe"])
def test_steps_reproduce_run_search(tmp_path, toy_table, method):
    rounds, children = 3, 2
    _run_pipeline_steps(tmp_path / "steps", toy_table, method, rounds, children)
    run_search(SearchSettings(tasks=(), trials=rounds * children, out=str(tmp_path / "loop"), method=method,
                              table=str(toy_table), metric_columns=("t1", "t2"), batch_size=children, seed=3,
                              search_id="s", progress=False), tracker=MemoryTracker())
    steps_rows, loop_rows = _ledger_rows(tmp_path / "steps"), _ledger_rows(tmp_path / "loop")
    assert len(steps_rows) == rounds * children
    assert steps_rows == loop_rows
    a = load_checkpoint(tmp_path / "steps" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "loop" / "checkpoint.pt")
    assert a["step"] == rounds
    _assert_same(a, b)


def test_every_step_is_idempotent(tmp_path, toy_table):
    search_dir = tmp_path / "s"
    outputs = _run_pipeline_steps(search_dir, toy_table, "reinforce", 2, 2)
    checkpoint = (search_dir / "checkpoint.pt").read_bytes()
    ledger = _ledger_rows(search_dir)
    # A retried or cached task runs again: nothing changes and nothing counts twice.
    assert steps.init_search(search_dir, (), "reinforce", None, 3, children_per_round=2, table=str(toy_table),
                             metric_columns=("t1", "t2"), search_id="s") == 2
    trials = steps.controller_step(search_dir, 1, 2)
    assert trials == json.loads((search_dir / "rounds" / "000001" / "trials.json").read_text())
    results = [steps.train_child(search_dir, t) for t in trials]
    again = steps.aggregate_rewards(search_dir, 1, results)
    assert again["next_round"] == 2 and again["markdown"] == outputs[1]["markdown"]
    assert (search_dir / "checkpoint.pt").read_bytes() == checkpoint
    assert _ledger_rows(search_dir) == ledger


def test_aggregate_metrics_and_markdown(tmp_path, toy_table):
    tracker = MemoryTracker()
    search_dir = tmp_path / "s"
    steps.init_search(search_dir, (), "reinforce", None, 0, children_per_round=4, table=str(toy_table),
                      metric_columns=("t1", "t2"), search_id="s")
    trials = steps.controller_step(search_dir, 0, 4)
    out = steps.aggregate_rewards(search_dir, 0, [steps.train_child(search_dir, t) for t in trials], tracker=tracker)
    tasks = {t["task"] for t in trials}
    for task in tasks:
        assert f"reward/{task}/accuracy_top10" in out["metrics"]
        assert f"| {task} |" in out["markdown"]
    assert out["next_round"] == 1 and "controller/loss" in " ".join(out["metrics"])
    assert len(tracker.trials) == 4 and tracker.controller[0][0] == 0 and tracker.search_id == "s"


def test_a_search_continues_where_it_stopped(tmp_path, toy_table):
    search_dir = tmp_path / "s"
    _run_pipeline_steps(search_dir, toy_table, "reinforce", 1, 2)
    start = steps.init_search(search_dir, (), "reinforce", None, 3, children_per_round=2, table=str(toy_table),
                              metric_columns=("t1", "t2"), init_from="resume")
    assert start == 1
    trials = steps.controller_step(search_dir, start, 2)
    assert [t["trial_id"] for t in trials] == ["s/000001/000", "s/000001/001"]
    with pytest.raises(ConfigError, match="resume"):
        steps.init_search(search_dir, (), "reinforce", None, 4, children_per_round=2, table=str(toy_table),
                          metric_columns=("t1", "t2"), init_from="resume")


def test_rounds_out_of_order_and_foreign_results_are_refused(tmp_path, toy_table):
    search_dir = tmp_path / "s"
    steps.init_search(search_dir, (), "reinforce", None, 0, children_per_round=2, table=str(toy_table),
                      metric_columns=("t1", "t2"), search_id="s")
    with pytest.raises(ConfigError, match="step 0, not 1"):
        steps.controller_step(search_dir, 1, 2)
    with pytest.raises(ConfigError, match="children"):
        steps.controller_step(search_dir, 0, 3)
    trials = steps.controller_step(search_dir, 0, 2)
    first = steps.train_child(search_dir, trials[0])
    with pytest.raises(ConfigError, match="missing"):
        steps.aggregate_rewards(search_dir, 0, [first])

"""A search of any length from one submit: windows of rounds that continue themselves.

The steps directly (a fake `submit` records what would be sent), then `submit_next` against the
fake KFP API server; the whole chain through kfp.local: tests/pipelines/test_continuation.py."""

from __future__ import annotations

import json

import pytest

from kfp_fixtures import kfp_server  # noqa: F401
from transfer_automl.errors import ConfigError
from transfer_automl.search import Ledger
from transfer_automl.steps import pipeline_steps as steps


def _settings(table) -> dict:
    return {"table": str(table), "metric_columns": ["t1", "t2"], "method": "rs", "seed": 1, "search_id": "long"}


class Submits:
    def __init__(self):
        self.calls: list[tuple[str, dict, int]] = []

    def __call__(self, run_id, parameters, step):
        self.calls.append((run_id, parameters, step))
        return f"next-{len(self.calls)}"


def _window(search_dir, settings, start, rounds, children, max_trials, packs=1):
    """One window's rounds as the pipeline runs them; returns the round after the window."""
    k = steps.init_search(search_dir, settings, children, rounds, max_trials)
    assert k == start
    for _ in range(rounds):
        packs_ = steps.round_packs(search_dir, k, children, packs)
        k = steps.aggregate_rewards(search_dir, k, [steps.train_pack(search_dir, p) for p in packs_])["next_round"]
    return k


def test_windows_continue_until_the_budget_then_stop(tmp_path, toy_table):
    search_dir, submit = tmp_path / "s", Submits()
    settings = _settings(toy_table)
    # 5 trials of 2 children: rounds of 2, 2 and 1; windows of 2 rounds: [0, 1], [2, (3: past the budget)]
    assert _window(search_dir, settings, 0, 2, 2, 5) == 2
    out = steps.continue_search(search_dir, settings, 5, "run-a", submit)
    assert out == {"status": "submitted", "step": 2, "next_run": "next-1"}
    [(run_id, parameters, step)] = submit.calls
    assert (run_id, step) == ("run-a", 2)
    assert parameters == {"search_dir": str(search_dir), "settings": {**settings, "init_from": "resume"},
                          "max_trials": 5}
    record = json.loads((search_dir / "continuations" / "000002.json").read_text())
    assert record["by_run"] == "run-a" and record["next_run"] == "next-1"
    # A retried continuation step, and a doubled window that reached the same step: nothing sent.
    assert steps.continue_search(search_dir, settings, 5, "run-a", submit)["status"] == "continued"
    assert steps.continue_search(search_dir, settings, 5, "run-b", submit) == {
        "status": "continued", "step": 2, "next_run": "next-1"}
    assert len(submit.calls) == 1
    # The next window: round 2 (one trial left), then round 3 past the budget: one empty pack (a
    # ParallelFor over nothing is avoided), nothing runs.
    assert _window(search_dir, parameters["settings"], 2, 2, 2, 5, packs=2) == 4
    assert steps.round_packs(search_dir, 3, 2, 2) == [{"round_index": 3, "pack_index": 0, "trials": []}]
    assert steps.continue_search(search_dir, settings, 5, "next-1", submit) == {"status": "done", "step": 3,
                                                                               "next_run": None}
    assert len(submit.calls) == 1
    rows = Ledger(search_dir / "ledger").read().to_pylist()
    assert [r["controller_step"] for r in rows] == [0, 0, 1, 1, 2]
    assert len({r["trial_id"] for r in rows}) == 5
    # A doubled last window (the same parameters again) trains and tells nothing.
    before = (search_dir / "checkpoint.pt").read_bytes()
    steps.init_search(search_dir, parameters["settings"], 2, 2, 5)
    for k in (2, 3):
        packs = steps.round_packs(search_dir, k, 2, 2)
        steps.aggregate_rewards(search_dir, k, [steps.train_pack(search_dir, p) for p in packs])
    assert Ledger(search_dir / "ledger").read().to_pylist() == rows
    assert (search_dir / "checkpoint.pt").read_bytes() == before


def test_a_crash_between_record_and_submit_is_retried_once(tmp_path, toy_table):
    search_dir, submit = tmp_path / "s", Submits()
    settings = _settings(toy_table)
    _window(search_dir, settings, 0, 1, 2, 4)

    def crash(*args):
        raise ConnectionError("API went away")

    with pytest.raises(ConnectionError):
        steps.continue_search(search_dir, settings, 4, "run-a", crash)
    assert steps.continue_search(search_dir, settings, 4, "run-b", submit)["status"] == "continued"  # not its record
    assert steps.continue_search(search_dir, settings, 4, "run-a", submit)["status"] == "submitted"  # the retry
    assert steps.continue_search(search_dir, settings, 4, "run-a", submit)["status"] == "continued"
    assert len(submit.calls) == 1


def test_one_run_without_a_budget_never_continues(tmp_path, toy_table):
    search_dir = tmp_path / "s"
    _window(search_dir, _settings(toy_table), 0, 1, 2, 0)
    assert steps.continue_search(search_dir, _settings(toy_table), 0, "run-a", Submits())["status"] == "single-run"
    with pytest.raises(ConfigError, match="max_trials: must be >= 0"):
        steps.init_search(tmp_path / "t", _settings(toy_table), 2, 1, -1)


@pytest.mark.slow
def test_submit_next_starts_the_same_pipeline_version_in_the_same_experiment(kfp_server, monkeypatch):
    from transfer_automl.kubeflow.continuation import submit_next

    monkeypatch.setenv("TAML_KFP_HOST", kfp_server.url)
    kfp_server.runs["run-a"] = {"run_id": "run-a", "display_name": "cr search", "experiment_id": "experiment-3",
                                "service_account": "taml-pipeline-runner",
                                "pipeline_version_reference": {"pipeline_id": "pipeline-1",
                                                               "pipeline_version_id": "version-2"}}
    parameters = {"search_dir": "s3://taml/searches/cr", "settings": {"tasks": ["cr"], "init_from": "resume"},
                  "max_trials": 5000}
    new = submit_next("run-a", parameters, 10)
    [body] = kfp_server.bodies("POST", "/apis/v2beta1/runs")
    assert new == kfp_server.runs[new]["run_id"]
    assert body["pipeline_version_reference"] == {"pipeline_id": "pipeline-1", "pipeline_version_id": "version-2"}
    assert body["experiment_id"] == "experiment-3" and body["service_account"] == "taml-pipeline-runner"
    assert body["display_name"] == "cr search (from round 10)"
    assert body["runtime_config"]["parameters"] == parameters
    with pytest.raises(ConfigError, match="not a run id"):
        submit_next("{{$.pipeline_job_uuid}}", parameters, 10)

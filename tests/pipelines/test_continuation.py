"""A search of any length from one submit, end to end: multitask_search through kfp.local in
windows of one round; each window's continue_search calls a fake Kubeflow Pipelines API on
127.0.0.1 (GET the run, POST the next run of the same pipeline version), and the test runs the
run it recorded, as the API server would, until the budget is spent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kfp_fixtures import kfp_server  # noqa: F401
from transfer_automl.search import Ledger

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RUNS = "/apis/v2beta1/runs"


def test_a_chain_of_three_windows_runs_the_whole_budget(tmp_path, toy_table, kfp_server, monkeypatch):
    from pipelines.multitask_search.pipeline import build_pipeline
    from transfer_automl.kubeflow.local import run_local

    monkeypatch.setenv("TAML_KFP_HOST", kfp_server.url)  # the taml-endpoints ConfigMap's key, in the pods
    version = {"pipeline_id": "pipeline-1", "pipeline_version_id": "version-2"}
    kfp_server.unknown_run = {"display_name": "long search", "experiment_id": "experiment-7",
                              "service_account": "taml-pipeline-runner", "pipeline_version_reference": version}
    pipeline = build_pipeline(rounds=1, children_per_round=2, gpu=False)
    search_dir = tmp_path / "search"
    settings = {"table": str(toy_table), "metric_columns": ["t1", "t2"], "method": "rs", "seed": 1,
                "search_id": "long"}
    params = {"search_dir": str(search_dir), "settings": settings, "max_trials": 5}  # rounds of 2, 2, 1
    windows = []
    while params is not None:
        run_local(pipeline, params, tmp_path / f"root-{len(windows)}")
        windows.append(params)
        posted = kfp_server.bodies("POST", RUNS)
        params = posted[-1]["runtime_config"]["parameters"] if len(posted) == len(windows) else None
    assert len(windows) == 3
    posted = kfp_server.bodies("POST", RUNS)
    assert len(posted) == 2  # the last window found the budget spent and submitted nothing
    for body in posted:
        assert body["pipeline_version_reference"] == version and body["experiment_id"] == "experiment-7"
        assert body["runtime_config"]["parameters"]["settings"] == {**settings, "init_from": "resume"}
        assert body["runtime_config"]["parameters"]["max_trials"] == 5
    assert [b["display_name"] for b in posted] == ["long search (from round 1)", "long search (from round 2)"]
    # Each continuation asked for the run it continues (kfp.local's run id), then started the next.
    gets = [r["path"] for r in kfp_server.requests if r["method"] == "GET" and r["path"].startswith(RUNS + "/")]
    assert len(gets) == 2 and len(set(gets)) == 2
    rows = Ledger(search_dir / "ledger").read().to_pylist()
    assert [r["controller_step"] for r in rows] == [0, 0, 1, 1, 2] and len({r["trial_id"] for r in rows}) == 5
    records = {p.name: json.loads(p.read_text()) for p in (search_dir / "continuations").glob("*.json")}
    assert sorted(records) == ["000001.json", "000002.json"]
    assert [records[k]["next_run"] for k in sorted(records)] == ["run-1", "run-2"] or \
        all(r["next_run"] for r in records.values())

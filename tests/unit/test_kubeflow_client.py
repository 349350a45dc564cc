"""`taml pipeline submit` / `schedule` through kfp.Client against a small HTTP server on
127.0.0.1 that answers like the Kubeflow Pipelines v2 API and records every request (the one
fake we accept: no KFP API server can run here)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from kfp_fixtures import kfp_server  # noqa: F401

# MLflow stores, HTTP servers, whole searches: part of `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

API = "/apis/v2beta1"


def _taml(*argv) -> int:
    from transfer_automl.cli import main

    return main(list(argv))


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def test_submit_uploads_once_and_runs(kfp_server, capsys):
    args = ["pipeline", "submit", "multitask_search", "--host", kfp_server.url, "--rounds", "1", "--children", "2",
            "search_dir=s3://taml/searches/demo",
            'settings={"tasks": ["sms_spam", "mpqa"], "budget_scale": 0.1, "data_dir": "s3://taml/data"}']
    assert _taml(*args, "--run-name", "first") == 0
    assert kfp_server.paths() == [
        ("GET", f"{API}/healthz"),
        ("GET", f"{API}/pipelines"),  # by name: not there yet
        ("POST", f"{API}/pipelines/upload"),
        ("GET", f"{API}/pipelines/pipeline-1/versions"),
        ("GET", f"{API}/experiments"),  # by name: not there yet
        ("POST", f"{API}/experiments"),
        ("POST", f"{API}/runs"),
    ]
    upload = kfp_server.requests[2]
    assert upload["query"]["name"] == ["multitask-search"]
    spec = yaml.safe_load_all(upload["body"]["uploadfile"])
    pipeline_spec, platform = list(spec)
    assert pipeline_spec["pipelineInfo"]["name"] == "multitask-search"
    tasks = {t["taskInfo"]["name"] for t in pipeline_spec["root"]["dag"]["tasks"].values()}
    assert {"init-search", "round-0-controller", "round-0-aggregate", "report"} <= tasks
    assert "round-1-controller" not in tasks  # --rounds 1 was compiled in
    assert "nvidia.com/gpu" in json.dumps(pipeline_spec["deploymentSpec"])
    [experiment] = kfp_server.bodies("POST", f"{API}/experiments")
    assert experiment["display_name"] == "taml"
    [run] = kfp_server.bodies("POST", f"{API}/runs")
    assert run["display_name"] == "first" and run["experiment_id"] == "experiment-3"
    assert run["pipeline_version_reference"] == {"pipeline_id": "pipeline-1", "pipeline_version_id": "version-2"}
    assert run["runtime_config"]["parameters"] == {"search_dir": "s3://taml/searches/demo", "settings": {
        "tasks": ["sms_spam", "mpqa"], "budget_scale": 0.1, "data_dir": "s3://taml/data"}}
    assert "authorization" not in upload["headers"] and "cookie" not in upload["headers"]  # standalone: none
    assert run["service_account"] == "taml-pipeline-runner"
    assert "pipeline_spec" not in run  # the run refers to the uploaded version
    assert "run run-4 (first)" in capsys.readouterr().out

    kfp_server.requests.clear()  # the same pipeline again: nothing uploaded, experiment reused
    assert _taml(*args) == 0
    assert ("POST", f"{API}/pipelines/upload") not in kfp_server.paths()
    assert ("POST", f"{API}/experiments") not in kfp_server.paths()
    kfp_server.requests.clear()  # another shape: a new version of the same pipeline
    assert _taml(*[a if a != "1" else "2" for a in args]) == 0
    [version] = [r for r in kfp_server.requests if r["path"] == f"{API}/pipelines/upload_version"]
    assert version["query"]["pipelineid"] == ["pipeline-1"]
    assert re.fullmatch(r"multitask-search-[0-9a-f]{12}", version["query"]["name"][0])
    assert "round-1-controller" in version["body"]["uploadfile"]


def test_schedule_creates_a_recurring_run_on_the_cron(kfp_server, capsys):
    assert _taml("pipeline", "schedule", "scheduled_retraining", "--cron", "0 3 * * *", "--host", kfp_server.url,
                 "--cpu", "search_root=s3://taml/searches", "tasks=sms_spam,mpqa") == 0
    assert kfp_server.paths()[-1] == ("POST", f"{API}/recurringruns")
    [job] = kfp_server.bodies("POST", f"{API}/recurringruns")
    assert job["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}  # KFP's six fields, seconds first
    assert job["mode"] == "ENABLE" and job["no_catchup"] is True and int(job["max_concurrency"]) == 1
    assert job["display_name"] == "scheduled_retraining-schedule"
    assert job["runtime_config"]["parameters"] == {"search_root": "s3://taml/searches", "tasks": ["sms_spam", "mpqa"]}
    uploaded = kfp_server.requests[2]["body"]["uploadfile"]
    assert "scheduled-retraining" in uploaded and "nvidia.com/gpu" not in uploaded  # --cpu
    assert "'0 0 3 * * *'" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--cron", "every day"], "--cron 'every day' is not a cron expression"),
    (["--cron", "0 3 * * *", "nope=1"], "'nope' is not an input"),
    (["--cron", "0 3 * * *", "tasks"], "is not name=value"),
])
def test_bad_schedules_are_refused_before_any_request(kfp_server, capsys, argv, message):
    assert _taml("pipeline", "schedule", "scheduled_retraining", "--host", kfp_server.url, *argv,
                 "search_root=/x") == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert kfp_server.requests == []


def test_an_api_error_is_one_line_naming_the_status(kfp_server, capsys):
    kfp_server.fail[("POST", f"{API}/runs")] = 500
    assert _taml("pipeline", "submit", "multitask_search", "--host", kfp_server.url, "search_dir=/x") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "HTTP 500" in err and kfp_server.url in err


def test_missing_required_parameter_and_unreachable_host(capsys):
    assert _taml("pipeline", "submit", "transfer_search", "--host", "http://127.0.0.1:9", "search_dir=/x") == 2
    assert "needs parameter(s) ['target_tasks']" in capsys.readouterr().err
    assert _taml("pipeline", "submit", "transfer_search", "--host", "http://127.0.0.1:9", "search_dir=/x",
                 "target_tasks=t3") == 2
    assert "needs parameter source_search (the search to transfer from), or settings.transfer auto" in \
        capsys.readouterr().err
    assert _taml("pipeline", "submit", "multitask_search", "--host", "http://127.0.0.1:9", "search_dir=/x") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "127.0.0.1:9" in err


def test_multi_user_credentials_reach_every_request(kfp_server, capsys, monkeypatch, tmp_path):
    """--existing-token and --cookie (a multi-user Kubeflow), else the projected service-account
    token at $KF_PIPELINES_SA_TOKEN_PATH; never printed."""
    args = ["pipeline", "submit", "scheduled_retraining", "--host", kfp_server.url, "--rounds", "1",
            "search_root=s3://taml/searches", "--namespace", "kubeflow-user-example-com"]
    assert _taml(*args, "--existing-token", "tok-123", "--cookie", "authservice_session=abc") == 0
    assert kfp_server.requests and all(r["headers"].get("authorization") == "Bearer tok-123" and
                                       "authservice_session=abc" in r["headers"].get("cookie", "")
                                       for r in kfp_server.requests)
    assert "tok-123" not in capsys.readouterr().out
    kfp_server.requests.clear()
    token = tmp_path / "token"
    token.write_text("projected-456\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    assert _taml(*args) == 0
    assert all(r["headers"].get("authorization") == "Bearer projected-456" for r in kfp_server.requests)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "missing"))
    kfp_server.requests.clear()
    assert _taml(*args) == 2
    assert "KF_PIPELINES_SA_TOKEN_PATH" in capsys.readouterr().err and kfp_server.requests == []
    assert _taml(*args, "--cookie", "no-equals-sign") == 2
    assert "--cookie: expected NAME=VALUE" in capsys.readouterr().err

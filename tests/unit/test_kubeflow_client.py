"""`taml pipeline submit` / `schedule` through kfp.Client against a small HTTP server on
127.0.0.1 that answers like the Kubeflow Pipelines v2 API and records every request (the one
fake we accept: no KFP API server can run here)."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

# MLflow stores, HTTP servers, whole searches: part of `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

API = "/apis/v2beta1"


class FakeKfp:
    """Pipelines, versions, experiments, runs and recurring runs in memory; `requests` records
    (method, path, query, body) with JSON bodies decoded and uploaded files as text."""

    def __init__(self):
        self.requests: list[dict] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.experiments: dict[str, dict] = {}
        self.fail: dict[tuple[str, str], int] = {}  # (method, path) -> HTTP status to answer with
        self.ids = 0

    def new_id(self, kind: str) -> str:
        self.ids += 1
        return f"{kind}-{self.ids}"

    def handle(self, method: str, path: str, query: dict, body) -> tuple[int, dict]:
        if (method, path) in self.fail:
            return self.fail[(method, path)], {"error": "injected", "message": "injected failure"}
        if (method, path) == ("GET", f"{API}/healthz"):
            return 200, {"multi_user": False}
        if (method, path) == ("GET", f"{API}/pipelines"):
            name = _filter_value(query)
            return 200, {"pipelines": [p for p in self.pipelines.values() if p["display_name"] == name],
                         "total_size": len(self.pipelines)}
        if (method, path) == ("POST", f"{API}/pipelines/upload"):
            pid = self.new_id("pipeline")
            self.pipelines[pid] = {"pipeline_id": pid, "display_name": query["name"][0]}
            self.versions[pid] = [{"pipeline_id": pid, "pipeline_version_id": self.new_id("version"),
                                   "display_name": query["name"][0]}]
            return 200, self.pipelines[pid]
        if (method, path) == ("POST", f"{API}/pipelines/upload_version"):
            pid = query["pipelineid"][0]
            version = {"pipeline_id": pid, "pipeline_version_id": self.new_id("version"), "display_name": query["name"][0]}
            self.versions[pid].append(version)
            return 200, version
        m = re.fullmatch(f"{API}/pipelines/([^/]+)/versions", path)
        if method == "GET" and m:
            name = _filter_value(query)
            versions = [v for v in self.versions.get(m.group(1), []) if name is None or v["display_name"] == name]
            return 200, {"pipeline_versions": versions, "total_size": len(versions)}
        if (method, path) == ("GET", f"{API}/experiments"):
            name = _filter_value(query)
            return 200, {"experiments": [e for e in self.experiments.values() if e["display_name"] == name]}
        if (method, path) == ("POST", f"{API}/experiments"):
            eid = self.new_id("experiment")
            self.experiments[eid] = {**body, "experiment_id": eid}
            return 200, self.experiments[eid]
        if (method, path) == ("POST", f"{API}/runs"):
            return 200, {**body, "run_id": self.new_id("run"), "state": "PENDING"}
        if (method, path) == ("POST", f"{API}/recurringruns"):
            return 200, {**body, "recurring_run_id": self.new_id("recurring")}
        return 404, {"error": f"no route {method} {path}"}

    def paths(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.requests]

    def bodies(self, method: str, path: str) -> list:
        return [r["body"] for r in self.requests if (r["method"], r["path"]) == (method, path)]


def _filter_value(query: dict) -> str | None:
    if "filter" not in query:
        return None
    [predicate] = json.loads(query["filter"][0])["predicates"]
    assert predicate["operation"] in ("EQUALS", 1) and predicate["key"] == "display_name"  # enum name or number
    return predicate["stringValue"]


def _decode(content_type: str, raw: bytes):
    if not raw:
        return None
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode()
                for part in message.iter_parts()}
    return json.loads(raw)


@pytest.fixture()
def kfp_server(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no KFP context file from the user's home
    for var in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    fake = FakeKfp()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            url = urlparse(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = _decode(self.headers.get("Content-Type", ""), raw)
            query = parse_qs(url.query)
            fake.requests.append({"method": self.command, "path": url.path, "query": query, "body": body})
            try:
                status, answer = fake.handle(self.command, url.path, query, body)
            except Exception as exc:  # a request the fake did not expect: make it visible
                status, answer = 500, {"error": f"fake server: {type(exc).__name__}: {exc}"}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def _taml(*argv) -> int:
    from transfer_automl.cli import main

    return main(list(argv))


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def test_submit_uploads_once_and_runs(kfp_server, capsys):
    args = ["pipeline", "submit", "multitask_search", "--host", kfp_server.url, "--rounds", "1", "--children", "2",
            "search_dir=s3://taml/searches/demo", 'settings={"tasks": ["sms_spam", "mpqa"], "budget_scale": 0.1}']
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
        "tasks": ["sms_spam", "mpqa"], "budget_scale": 0.1}}
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
    assert "needs parameter(s) ['source_search', 'target_tasks']" in capsys.readouterr().err
    assert _taml("pipeline", "submit", "multitask_search", "--host", "http://127.0.0.1:9", "search_dir=/x") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "127.0.0.1:9" in err

"""A small HTTP server on 127.0.0.1 that answers like the Kubeflow Pipelines v2 API and records
every request (the one fake we accept: no KFP API server can run here). Import the fixture into a
test module (`from kfp_fixtures import kfp_server`)."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

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
        self.runs: dict[str, dict] = {}
        # A run the server did not start (kfp.local's): GET /runs/<id> answers with this, as the
        # run of an uploaded pipeline version, when set.
        self.unknown_run: dict | None = None
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
            run = {**body, "run_id": self.new_id("run"), "state": "PENDING"}
            self.runs[run["run_id"]] = run
            return 200, run
        m = re.fullmatch(f"{API}/runs/([^/]+)", path)
        if method == "GET" and m:
            if m.group(1) not in self.runs and self.unknown_run is not None:
                self.runs[m.group(1)] = {**self.unknown_run, "run_id": m.group(1)}
            if m.group(1) in self.runs:
                return 200, self.runs[m.group(1)]
            return 404, {"error": f"no run {m.group(1)}"}
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
            fake.requests.append({"method": self.command, "path": url.path, "query": query, "body": body,
                                  "headers": {k.lower(): v for k, v in self.headers.items()}})
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

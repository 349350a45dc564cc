"""`taml cluster doctor` against a local HTTP server that answers the Kubernetes API paths with
recorded-style JSON objects, reached through a kubeconfig that points at it (the real
kubernetes client, over HTTP)."""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401

NS = "/api/v1/namespaces/taml"


def _meta(kind: str, name: str, **extra) -> dict:
    return {"kind": kind, "apiVersion": "v1", "metadata": {"name": name, "namespace": "taml", **extra}}


def _service(name: str, ports: list[int]) -> dict:
    return {**_meta("Service", name), "spec": {"ports": [{"port": p, "protocol": "TCP"} for p in ports]}}


def _endpoints(name: str, ready: int) -> dict:
    subsets = [{"addresses": [{"ip": f"10.0.0.{i + 1}"} for i in range(ready)], "ports": [{"port": 1}]}] if ready else []
    return {**_meta("Endpoints", name), "subsets": subsets}


def _node(name: str, gpus: int, labelled: bool) -> dict:
    labels = {"kubernetes.io/hostname": name, **({"nvidia.com/gpu.present": "true"} if labelled else {})}
    allocatable = {"cpu": "16", "memory": "64Gi", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {"metadata": {"name": name, "labels": labels}, "status": {"allocatable": allocatable}}


KFP = "/apis/apps/v1/namespaces/kubeflow/deployments/ml-pipeline"


def _kfp_api(version: str = "2.15.0", multi_user: bool = False, ready: int = 1) -> dict:
    container = {"name": "ml-pipeline-api-server", "image": f"ghcr.io/kubeflow/kfp-api-server:{version}",
                 "env": [{"name": "MULTIUSER", "value": str(multi_user).lower()}]}
    return {"kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"},
            "spec": {"selector": {"matchLabels": {"app": "ml-pipeline"}},
                     "template": {"metadata": {"labels": {"app": "ml-pipeline"}}, "spec": {"containers": [container]}}},
            "status": {"readyReplicas": ready}}


# What a healthy cluster with the local overlay (in-cluster MinIO) and a standalone KFP answers.
HEALTHY = {
    KFP: _kfp_api(),
    f"{NS}/configmaps/kfp-launcher": {**_meta("ConfigMap", "kfp-launcher"),
                                      "data": {"defaultPipelineRoot": "s3://taml/pipeline-root"}},
    NS: {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "taml"}, "status": {"phase": "Active"}},
    f"{NS}/serviceaccounts/taml-pipeline-runner": _meta("ServiceAccount", "taml-pipeline-runner"),
    f"{NS}/secrets/taml-s3-credentials": {**_meta("Secret", "taml-s3-credentials"), "type": "Opaque",
                                          "data": {"AWS_ACCESS_KEY_ID": "QUtJQQ==", "AWS_SECRET_ACCESS_KEY": "c2VjcmV0"}},
    f"{NS}/secrets/taml-postgres": {**_meta("Secret", "taml-postgres"), "type": "Opaque",
                                    "data": {"username": "bWxmbG93", "password": "cHc="}},
    f"{NS}/configmaps/taml-endpoints": {**_meta("ConfigMap", "taml-endpoints"), "data": {
        "MLFLOW_TRACKING_URI": "http://mlflow.taml.svc.cluster.local:5000",
        "AWS_ENDPOINT_URL": "http://minio.taml.svc.cluster.local:9000", "AWS_DEFAULT_REGION": "us-east-1"}},
    f"{NS}/services/mlflow": _service("mlflow", [5000]),
    f"{NS}/endpoints/mlflow": _endpoints("mlflow", 1),
    f"{NS}/services/minio": _service("minio", [9000, 9001]),
    f"{NS}/endpoints/minio": _endpoints("minio", 1),
    "/api/v1/nodes": {"kind": "NodeList", "apiVersion": "v1", "metadata": {},
                      "items": [_node("cpu-1", 0, False), _node("gpu-1", 2, True)]},
}


@pytest.fixture()
def cluster(tmp_path):
    """(responses, kubeconfig path, requested paths): edit `responses` (a path -> object, or an
    int status) before running the doctor."""
    responses = copy.deepcopy(HEALTHY)
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?")[0]
            requested.append(path)
            answer = responses.get(path, 404)
            status = answer if isinstance(answer, int) else 200
            if isinstance(answer, int):
                reason = {403: "Forbidden", 404: "NotFound"}.get(status, "InternalError")
                answer = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                          "message": f"{path}: {reason}", "code": status}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "test", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }))
    yield responses, kubeconfig, requested
    server.shutdown()
    server.server_close()


def _doctor(kubeconfig, *args) -> int:
    from transfer_automl.cli import main

    return main(["cluster", "doctor", "--kubeconfig", str(kubeconfig), *args])


def _checks(capsys) -> dict:
    body = json.loads(capsys.readouterr().out)
    return body, {c["name"]: (c["status"], c["detail"]) for c in body["checks"]}


def test_a_ready_cluster_passes_and_gets_a_parallelism(cluster, capsys):
    responses, kubeconfig, requested = cluster
    assert _doctor(kubeconfig, "--children", "4") == 0
    out = capsys.readouterr().out
    assert "ready" in out and "--children 4 --gpus 2" in out
    assert _doctor(kubeconfig, "--json", "--children", "4") == 0
    body, checks = _checks(capsys)
    assert body["ok"] is True and body["gpus"] == 2 and body["suggested_parallelism"] == 2
    assert {name: status for name, (status, _) in checks.items()} == {
        "kubeflow pipelines": "ok", "namespace": "ok", "service account": "ok", "configmap kfp-launcher": "ok",
        "secret taml-s3-credentials": "ok", "secret taml-postgres": "ok", "configmap taml-endpoints": "ok",
        "mlflow": "ok", "object store": "ok", "gpus": "ok"}
    assert body["kfp_version"] == "2.15.0" and body["kfp_mode"] == "standalone"
    assert checks["kubeflow pipelines"][1] == "2.15.0, standalone, in kubeflow"
    assert checks["configmap kfp-launcher"][1] == "defaultPipelineRoot=s3://taml/pipeline-root"
    assert "AWS_SECRET_ACCESS_KEY" in checks["secret taml-s3-credentials"][1]
    assert "c2VjcmV0" not in json.dumps(body)  # secret values are never printed
    assert f"{NS}/endpoints/minio" in requested and "/api/v1/nodes" in requested
    assert _doctor(kubeconfig, "--json", "--children", "1") == 0
    assert _checks(capsys)[0]["suggested_parallelism"] == 1  # never more than the children of a round


def test_a_broken_cluster_names_every_problem(cluster, capsys):
    responses, kubeconfig, _ = cluster
    del responses[f"{NS}/secrets/taml-postgres"]
    responses[f"{NS}/secrets/taml-s3-credentials"]["data"].pop("AWS_SECRET_ACCESS_KEY")
    responses[f"{NS}/endpoints/mlflow"] = _endpoints("mlflow", 0)
    responses[f"{NS}/services/minio"] = _service("minio", [9001])
    responses["/api/v1/nodes"]["items"] = [_node("gpu-1", 4, labelled=False)]
    assert _doctor(kubeconfig, "--json") == 1
    body, checks = _checks(capsys)
    assert body["ok"] is False and body["suggested_parallelism"] is None
    assert checks["secret taml-postgres"][0] == "fail" and "secret-template.yaml" in checks["secret taml-postgres"][1]
    assert checks["secret taml-s3-credentials"] == ("fail", "missing keys ['AWS_SECRET_ACCESS_KEY']")
    assert checks["mlflow"][0] == "fail" and "no ready pods" in checks["mlflow"][1]
    assert checks["object store"][0] == "fail" and "not 9000" in checks["object store"][1]
    assert checks["gpus"][0] == "fail" and "nvidia.com/gpu.present=true" in checks["gpus"][1]
    assert checks["namespace"][0] == checks["configmap taml-endpoints"][0] == "ok"
    assert _doctor(kubeconfig) == 1
    assert "not ready" in capsys.readouterr().out


def test_irsa_and_external_s3_need_no_secret_or_minio(cluster, capsys):
    responses, kubeconfig, requested = cluster
    responses[f"{NS}/serviceaccounts/taml-pipeline-runner"]["metadata"]["annotations"] = {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/taml-pipeline-runner"}
    del responses[f"{NS}/secrets/taml-s3-credentials"], responses[f"{NS}/services/minio"]
    responses[f"{NS}/configmaps/taml-endpoints"]["data"]["AWS_ENDPOINT_URL"] = "https://s3.us-east-1.amazonaws.com"
    responses["/api/v1/nodes"]["items"] = [_node("cpu-1", 0, False)]
    assert _doctor(kubeconfig, "--json") == 0
    body, checks = _checks(capsys)
    assert checks["service account"] == ("ok", "taml-pipeline-runner (IRSA role)")
    assert checks["secret taml-s3-credentials"][0] == "ok" and "IRSA" in checks["secret taml-s3-credentials"][1]
    assert checks["object store"][0] == "ok" and "external" in checks["object store"][1]
    assert checks["gpus"][0] == "warn" and "--cpu" in checks["gpus"][1] and body["suggested_parallelism"] is None
    assert f"{NS}/services/minio" not in requested


def test_a_missing_namespace_stops_early_and_forbidden_nodes_warn(cluster, capsys):
    responses, kubeconfig, requested = cluster
    responses["/api/v1/nodes"] = 403
    assert _doctor(kubeconfig, "--json") == 0
    assert _checks(capsys)[1]["gpus"][0] == "warn"
    del responses[NS]
    requested.clear()
    assert _doctor(kubeconfig, "--json") == 1
    body, checks = _checks(capsys)
    assert list(checks) == ["kubeflow pipelines", "namespace"] and "kubectl apply -k" in checks["namespace"][1]
    assert requested == [KFP, NS]
    assert _doctor(kubeconfig, "--json", "--namespace", "other") == 1
    assert "other not found" in _checks(capsys)[1]["namespace"][1]


def test_no_configuration_or_no_server_is_one_line(tmp_path, cluster, capsys):
    _, kubeconfig, _ = cluster
    assert _doctor(tmp_path / "missing") == 2
    assert "no Kubernetes configuration" in capsys.readouterr().err
    kubeconfig.write_text(re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:9", kubeconfig.read_text()))  # refused
    assert _doctor(kubeconfig) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Kubernetes API unreachable" in err


def test_kfp_missing_or_not_ready_fails_and_a_missing_launcher_config_only_warns(cluster, capsys):
    responses, kubeconfig, _ = cluster
    del responses[f"{NS}/configmaps/kfp-launcher"]
    assert _doctor(kubeconfig, "--json") == 0  # standalone: KFP's launcher has built-in defaults
    assert _checks(capsys)[1]["configmap kfp-launcher"][0] == "warn"
    responses[KFP] = _kfp_api(ready=0)
    assert _doctor(kubeconfig, "--json") == 1
    assert "no ready replica" in _checks(capsys)[1]["kubeflow pipelines"][1]
    del responses[KFP]
    assert _doctor(kubeconfig, "--json") == 1
    body, checks = _checks(capsys)
    assert checks["kubeflow pipelines"][0] == "fail" and "not installed" in checks["kubeflow pipelines"][1]
    assert body["kfp_version"] is None


def test_a_profile_namespace_of_a_multi_user_kfp_with_mlflow_and_minio_in_taml(cluster, capsys):
    """overlays/profile: the runner's objects in the profile, MLflow, PostgreSQL and MinIO in `taml`."""
    responses, kubeconfig, requested = cluster
    profile = "/api/v1/namespaces/team-a"
    responses[KFP] = _kfp_api("2.16.1", multi_user=True)
    responses[profile] = {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "team-a"},
                          "status": {"phase": "Active"}}
    for key in ("serviceaccounts/taml-pipeline-runner", "secrets/taml-s3-credentials", "configmaps/taml-endpoints"):
        responses[f"{profile}/{key}"] = copy.deepcopy(responses[f"{NS}/{key}"])
    assert _doctor(kubeconfig, "--json", "--namespace", "team-a") == 1  # the profile controller's ConfigMap is missing
    body, checks = _checks(capsys)
    assert body["kfp_mode"] == "multi-user" and checks["configmap kfp-launcher"][0] == "fail"
    responses[f"{profile}/configmaps/kfp-launcher"] = copy.deepcopy(responses[f"{NS}/configmaps/kfp-launcher"])
    requested.clear()
    assert _doctor(kubeconfig, "--json", "--namespace", "team-a") == 0
    body, checks = _checks(capsys)
    assert {status for status, _ in checks.values()} == {"ok"}, checks
    # MLflow, its database secret and MinIO were looked for where their URLs point: in taml
    assert f"{NS}/endpoints/mlflow" in requested and f"{NS}/secrets/taml-postgres" in requested
    assert f"{NS}/endpoints/minio" in requested and f"{profile}/services/mlflow" not in requested
    # multi-user KFP, but the runs pointed at KFP's own namespace: a warning that names --namespace
    responses["/api/v1/namespaces/kubeflow"] = {"kind": "Namespace", "apiVersion": "v1",
                                                "metadata": {"name": "kubeflow"}, "status": {"phase": "Active"}}
    _doctor(kubeconfig, "--json", "--namespace", "kubeflow")
    assert "--namespace <profile>" in _checks(capsys)[1]["run namespace"][1]


def test_probe_s3_lists_an_external_bucket_from_here(cluster, capsys, s3_bucket, s3_env, monkeypatch):
    responses, kubeconfig, _ = cluster
    data = responses[f"{NS}/configmaps/taml-endpoints"]["data"]
    data["AWS_ENDPOINT_URL"], data["TAML_BUCKET"] = s3_env, s3_bucket  # moto: external to the cluster
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the ConfigMap's endpoint is the one probed
    assert _doctor(kubeconfig, "--json", "--probe-s3") == 0
    checks = _checks(capsys)[1]
    assert checks["bucket"] == ("ok", f"s3://{s3_bucket} at {s3_env} answers (from this machine, with its AWS "
                                      "credentials)")
    data["TAML_BUCKET"] = "no-such-bucket-here"
    assert _doctor(kubeconfig, "--json", "--probe-s3") == 1
    assert _checks(capsys)[1]["bucket"][0] == "fail"
    assert _doctor(kubeconfig, "--json") == 0  # without --probe-s3 nothing is sent to the store
    assert "bucket" not in _checks(capsys)[1]

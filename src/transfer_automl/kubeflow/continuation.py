"""The next window of a long search: one more run of the same pipeline version, submitted from
inside the run that ends (steps.pipeline_steps.continue_search decides whether, and records it).

Why this mechanism: a recurring run fires on a clock, not when a window ends, so it either waits
idle between windows or starts one while the last still runs (max_concurrency=1 only queues it),
and disabling itself at the end needs the same API call from inside the cluster anyway. A last
step that submits the next run starts each window the moment the previous one ends, runs the
exact pipeline version and parameters of the chain, and leaves a record in the store.

The API is reached as `taml pipeline submit` reaches it (kfp.Client), from the pod:

* host: $TAML_KFP_HOST (the taml-endpoints ConfigMap), else KFP's in-cluster service
  `http://ml-pipeline.kubeflow.svc.cluster.local:8888`;
* credentials: the projected service-account token at $KF_PIPELINES_SA_TOKEN_PATH (default
  /var/run/secrets/kubeflow/pipelines/token when it exists; audience `pipelines.kubeflow.org`;
  multi-user Kubeflow mounts it with its PodDefault `access-ml-pipeline`), none on a standalone
  KFP.

The calls are the two REST requests of the v2beta1 API (GET /runs/{id}, POST /runs), made with the
standard library: inside a step `kfp.client` cannot be imported (kfp's runtime mode leaves the
compiler half-loaded).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from transfer_automl.errors import ConfigError
from transfer_automl.kubeflow.client import SA_TOKEN_PATH, KubeflowError

IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
API = "/apis/v2beta1"


def kfp_host() -> str:
    return (os.environ.get("TAML_KFP_HOST") or IN_CLUSTER_HOST).rstrip("/")


def _token() -> str | None:
    path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH") or SA_TOKEN_PATH
    try:
        with open(path) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        if os.environ.get("KF_PIPELINES_SA_TOKEN_PATH"):
            raise ConfigError(f"KF_PIPELINES_SA_TOKEN_PATH {path!r}: no such file") from None
        return None  # a standalone KFP: no authentication


def _request(host: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token = _token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{host}{API}{path}", method=method, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()[:300]
        raise KubeflowError(f"Kubeflow Pipelines API at {host}: {method} {path}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise KubeflowError(f"Kubeflow Pipelines API at {host} unreachable: {type(exc).__name__}: {exc}") from None


def submit_next(run_id: str, parameters: dict[str, Any], step: int, host: str | None = None) -> str:
    """Start one more run of run `run_id`'s pipeline version, in its experiment, with its service
    account, with `parameters` (its window starts at round `step`); returns the new run's id."""
    if not run_id or run_id.startswith("{{"):
        raise ConfigError(f"run_id {run_id!r}: not a run id (the pipeline passes dsl.PIPELINE_JOB_ID_PLACEHOLDER)")
    host = (host or kfp_host()).rstrip("/")
    run = _request(host, "GET", f"/runs/{run_id}")
    reference = run.get("pipeline_version_reference") or {}
    if not reference.get("pipeline_version_id"):
        raise ConfigError(f"run {run_id} was not started from an uploaded pipeline version; a search that "
                          "continues itself must be submitted with `taml pipeline submit`")
    name = (run.get("display_name") or "taml-search").split(" (from round")[0]
    body = {"display_name": f"{name} (from round {step})", "experiment_id": run.get("experiment_id"),
            "pipeline_version_reference": {"pipeline_id": reference.get("pipeline_id"),
                                           "pipeline_version_id": reference["pipeline_version_id"]},
            "runtime_config": {"parameters": parameters}}
    if run.get("service_account"):
        body["service_account"] = run["service_account"]
    new = _request(host, "POST", "/runs", body)
    if not new.get("run_id"):
        raise KubeflowError(f"Kubeflow Pipelines API at {host}: POST /runs answered without a run_id")
    return new["run_id"]

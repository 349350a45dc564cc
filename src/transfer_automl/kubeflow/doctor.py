"""`taml cluster doctor`: is this cluster ready to run the pipelines? Read-only checks with the
`kubernetes` client against what manifests/ deploys:

    Kubeflow Pipelines installed (Deployment ml-pipeline in --kfp-namespace, default kubeflow),
    its version and mode (standalone or multi-user: the API server's MULTIUSER); the namespace the
    runs go to (--namespace: taml, kubeflow, or a profile's); ServiceAccount taml-pipeline-runner;
    KFP's kfp-launcher ConfigMap there (read, never written); Secrets taml-s3-credentials (not
    needed with IRSA, the aws overlay) and taml-postgres (where MLflow runs); ConfigMap
    taml-endpoints; Service mlflow:5000 with ready endpoints, in the namespace its URL names; the
    object store (Service minio:9000 or KFP's minio-service when taml-endpoints points at one, in
    the namespace its URL names, else an external S3 endpoint); allocatable nvidia.com/gpu on
    nodes with the label the train_pack node selector asks for.

Only the Kubernetes API is read: whether the bucket answers from inside the namespace is not
checked (a probe pod would be a write); an in-cluster store is checked down to ready pods, and with
--probe-s3 an external endpoint's bucket (TAML_BUCKET) is listed from this machine, with its AWS
credentials and the ConfigMap's endpoint.

From the GPUs it suggests the ParallelFor parallelism (children trained at once: one GPU each).
Each check is ok, warn (works, with a caveat) or fail (a pipeline run would fail).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transfer_automl.errors import TamlError

NAMESPACE = "taml"
SERVICE_ACCOUNT = "taml-pipeline-runner"
S3_SECRET = "taml-s3-credentials"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
POSTGRES_SECRET = "taml-postgres"
POSTGRES_SECRET_KEYS = ("username", "password")
ENDPOINTS_CONFIGMAP = "taml-endpoints"
ENDPOINTS_KEYS = ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL")
MLFLOW_SERVICE, MLFLOW_PORT = "mlflow", 5000
MINIO_SERVICE, MINIO_PORT = "minio", 9000
KFP_MINIO_SERVICE = "minio-service"  # standalone KFP's own MinIO (overlays/kubeflow)
KFP_NAMESPACE = "kubeflow"
KFP_API_DEPLOYMENT = "ml-pipeline"
KFP_LAUNCHER_CONFIGMAP = "kfp-launcher"
GPU_RESOURCE = "nvidia.com/gpu"  # as pipelines/rounds.py
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
OK, WARN, FAIL = "ok", "warn", "fail"


class ClusterError(TamlError, RuntimeError):
    """The Kubernetes API could not be reached or configured."""


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str


@dataclass
class Report:
    namespace: str
    checks: list[Check] = field(default_factory=list)
    gpus: int = 0  # allocatable nvidia.com/gpu on nodes the children can be scheduled on
    suggested_parallelism: int | None = None
    kfp_version: str | None = None
    kfp_mode: str | None = None  # "standalone" | "multi-user"

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))


def api_client(kubeconfig: str | None = None, context: str | None = None):
    """A kubernetes ApiClient from a kubeconfig (default: $KUBECONFIG or ~/.kube/config), or the
    in-cluster service account when there is no kubeconfig."""
    import logging
    import os

    from kubernetes import client, config

    # urllib3 logs a warning per retry of an unreachable API server (to stderr, through logging's
    # last-resort handler); the doctor reports that failure itself, in one line.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    try:
        if kubeconfig or context or os.environ.get("KUBECONFIG") or os.path.exists(os.path.expanduser("~/.kube/config")):
            return config.new_client_from_config(config_file=kubeconfig, context=context)
        config.load_incluster_config()
        return client.ApiClient()
    except Exception as exc:  # ConfigException, FileNotFoundError, yaml errors
        raise ClusterError(f"no Kubernetes configuration: {type(exc).__name__}: {exc}") from None


def diagnose(api, namespace: str = NAMESPACE, kfp_namespace: str = KFP_NAMESPACE, probe_s3: bool = False) -> Report:
    """Run every check with the kubernetes ApiClient `api`."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    report = Report(namespace)
    _kfp(report, client.AppsV1Api(api), kfp_namespace)
    ns = _get(report, "namespace", lambda: core.read_namespace(namespace))
    if ns is None:
        report.add("namespace", FAIL, f"namespace {namespace} not found: kubectl apply -k manifests/overlays/<env>")
        return report  # everything else lives in it
    phase = getattr(ns.status, "phase", None)
    report.add("namespace", OK if phase == "Active" else FAIL, f"{namespace} ({phase})")

    sa = _get(report, "service account", lambda: core.read_namespaced_service_account(SERVICE_ACCOUNT, namespace))
    irsa = bool(sa is not None and (sa.metadata.annotations or {}).get(IRSA_ANNOTATION))
    if sa is not None:
        report.add("service account", OK, SERVICE_ACCOUNT + (" (IRSA role)" if irsa else ""))
    elif not _failed(report, "service account"):
        report.add("service account", FAIL, f"{SERVICE_ACCOUNT} not found in {namespace}")

    _launcher(report, core, namespace)
    _secret(report, core, namespace, S3_SECRET, S3_SECRET_KEYS, optional=irsa)
    endpoints = _config(report, core, namespace)
    mlflow_namespace = service_namespace(endpoints.get("MLFLOW_TRACKING_URI", ""), MLFLOW_SERVICE) or namespace
    _secret(report, core, mlflow_namespace, POSTGRES_SECRET, POSTGRES_SECRET_KEYS, optional=False)
    _service(report, core, mlflow_namespace, "mlflow", MLFLOW_SERVICE, MLFLOW_PORT)
    _object_store(report, core, namespace, endpoints, probe_s3)
    _gpus(report, core)
    return report


def service_namespace(url: str, service: str) -> str | None:
    """The namespace an in-cluster URL names: http://<service>.<namespace>[.svc...][:port]."""
    from urllib.parse import urlparse

    parts = (urlparse(url).hostname or "").split(".")
    return parts[1] if len(parts) >= 2 and parts[0] == service else None


def _kfp(report: Report, apps, kfp_namespace: str) -> None:
    """KFP installed: its API server's Deployment; the version from its image tag, the mode from
    its MULTIUSER setting."""
    deployment = _get(report, "kubeflow pipelines", lambda: apps.read_namespaced_deployment(KFP_API_DEPLOYMENT,
                                                                                           kfp_namespace))
    if deployment is None:
        if not _failed(report, "kubeflow pipelines"):
            report.add("kubeflow pipelines", FAIL, f"not installed: no Deployment {KFP_API_DEPLOYMENT} in "
                                                   f"{kfp_namespace} (--kfp-namespace if it lives elsewhere)")
        return
    containers = deployment.spec.template.spec.containers or []
    image = next((c.image for c in containers if "api-server" in (c.image or "") or c.name == "ml-pipeline-api-server"),
                 containers[0].image if containers else "")
    report.kfp_version = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "unknown"
    env = {e.name: e.value for c in containers for e in (c.env or [])}
    report.kfp_mode = "multi-user" if str(env.get("MULTIUSER", "false")).lower() == "true" else "standalone"
    ready = getattr(deployment.status, "ready_replicas", None) or 0
    report.add("kubeflow pipelines", OK if ready else FAIL,
               f"{report.kfp_version}, {report.kfp_mode}, in {kfp_namespace}"
               + ("" if ready else f"; no ready replica of {KFP_API_DEPLOYMENT}"))
    if report.kfp_mode == "multi-user" and report.namespace == kfp_namespace:
        report.add("run namespace", WARN, f"multi-user KFP runs pipelines in profile namespaces, not in {kfp_namespace}: "
                                          "--namespace <profile> (manifests/overlays/profile)")


def _launcher(report: Report, core, namespace: str) -> None:
    """KFP's own launcher settings in the run namespace: read, never written."""
    check = f"configmap {KFP_LAUNCHER_CONFIGMAP}"
    cm = _get(report, check, lambda: core.read_namespaced_config_map(KFP_LAUNCHER_CONFIGMAP, namespace))
    if cm is not None:
        root = (cm.data or {}).get("defaultPipelineRoot")
        report.add(check, OK, f"defaultPipelineRoot={root}" if root else "present; KFP's default pipeline root")
    elif not _failed(report, check):
        if report.kfp_mode == "multi-user":
            report.add(check, FAIL, f"not in {namespace}: KFP's profile controller creates it in every profile "
                                    "namespace; is this a profile's namespace?")
        else:
            report.add(check, WARN, f"not in {namespace}: KFP's launcher uses its built-in defaults (KFP's MinIO)")


def _secret(report: Report, core, namespace: str, name: str, keys: tuple[str, ...], optional: bool) -> None:
    check = f"secret {name}"
    secret = _get(report, check, lambda: core.read_namespaced_secret(name, namespace))
    if secret is None:
        if not _failed(report, check):
            if optional:
                report.add(check, OK, "not present; not needed: the service account has an IRSA role")
            else:
                report.add(check, FAIL, f"not found in {namespace}; create it from manifests/secret-template.yaml")
        return
    missing = [k for k in keys if k not in (secret.data or {})]  # values are never read out
    report.add(check, FAIL if missing else OK, f"missing keys {missing}" if missing else f"keys {list(keys)} present")


def _config(report: Report, core, namespace: str) -> dict[str, str]:
    check = f"configmap {ENDPOINTS_CONFIGMAP}"
    cm = _get(report, check, lambda: core.read_namespaced_config_map(ENDPOINTS_CONFIGMAP, namespace))
    if cm is None:
        if not _failed(report, check):
            report.add(check, FAIL, f"not found in {namespace}: the steps would not know MLflow and the object store")
        return {}
    data = dict(cm.data or {})
    missing = [k for k in ENDPOINTS_KEYS if not data.get(k)]
    report.add(check, FAIL if missing else OK,
               f"missing {missing}" if missing else ", ".join(f"{k}={data[k]}" for k in ENDPOINTS_KEYS))
    return data


def _service(report: Report, core, namespace: str, check: str, name: str, port: int) -> None:
    service = _get(report, check, lambda: core.read_namespaced_service(name, namespace))
    if service is None:
        if not _failed(report, check):
            report.add(check, FAIL, f"Service {name} not found in {namespace}")
        return
    ports = [p.port for p in (service.spec.ports or [])]
    if port not in ports:
        report.add(check, FAIL, f"Service {name} exposes ports {ports}, not {port}")
        return
    endpoints = _get(report, check, lambda: core.read_namespaced_endpoints(name, namespace))
    ready = sum(len(s.addresses or []) for s in (getattr(endpoints, "subsets", None) or []))
    if ready:
        report.add(check, OK, f"Service {name}:{port}, {ready} ready pod(s)")
    elif not _failed(report, check):
        report.add(check, FAIL, f"Service {name}:{port} has no ready pods (kubectl -n {namespace} get pods)")


def _object_store(report: Report, core, namespace: str, endpoints: dict[str, str], probe_s3: bool = False) -> None:
    url = endpoints.get("AWS_ENDPOINT_URL", "")
    for service in (MINIO_SERVICE, KFP_MINIO_SERVICE):
        if not url and service == MINIO_SERVICE or url.startswith((f"http://{service}.", f"http://{service}:")):
            where = service_namespace(url, service) or namespace
            _service(report, core, where, "object store", service, MINIO_PORT)
            return
    report.add("object store", OK, f"external S3 endpoint {url} (whether the bucket answers from the namespace "
                                   "is not checked: no probe pod)")
    if probe_s3:
        _probe_bucket(report, url, endpoints.get("TAML_BUCKET", ""))


def _probe_bucket(report: Report, url: str, bucket: str) -> None:
    """List the bucket through the ArtifactStore from this machine (one attempt, 10 s)."""
    import os

    from transfer_automl.errors import StorageError
    from transfer_automl.storage.s3 import S3Store

    if not bucket:
        report.add("bucket", FAIL, "taml-endpoints has no TAML_BUCKET")
        return
    saved = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        S3Store(f"s3://{bucket}", max_attempts=1, timeout_s=10).list("taml-doctor-probe/")
        report.add("bucket", OK, f"s3://{bucket} at {url} answers (from this machine, with its AWS credentials)")
    except StorageError as exc:
        report.add("bucket", FAIL, f"s3://{bucket} at {url}: {str(exc)[:300]}")
    finally:
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = saved


def _gpus(report: Report, core) -> None:
    nodes = _get(report, "gpus", lambda: core.list_node())
    if nodes is None:
        if not _failed(report, "gpus"):
            report.add("gpus", WARN, "no nodes listed")
        return
    total = labelled = 0
    for node in nodes.items:
        count = _quantity((node.status.allocatable or {}).get(GPU_RESOURCE, "0"))
        total += count
        if (node.metadata.labels or {}).get(GPU_NODE_LABEL[0]) == GPU_NODE_LABEL[1]:
            labelled += count
    report.gpus = labelled
    label = f"{GPU_NODE_LABEL[0]}={GPU_NODE_LABEL[1]}"
    if labelled:
        report.suggested_parallelism = labelled
        report.add("gpus", OK, f"{labelled} allocatable {GPU_RESOURCE} on nodes labelled {label}")
    elif total:
        report.add("gpus", FAIL, f"{total} allocatable {GPU_RESOURCE}, but on no node labelled {label}: "
                                 "train_pack's node selector would never match (label the GPU nodes, or "
                                 "install the NVIDIA GPU operator, which does)")
    else:
        report.suggested_parallelism = None
        report.add("gpus", WARN, f"no allocatable {GPU_RESOURCE}: compile the pipelines with --cpu "
                                 "(children then train on CPU)")


def _quantity(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _get(report: Report, check: str, request):
    """The object, or None when it does not exist (404). Forbidden and other API errors are
    recorded as a failed check with the reason; an unreachable server raises ClusterError."""
    from kubernetes.client.exceptions import ApiException

    try:
        return request()
    except ApiException as exc:
        if exc.status == 404:
            return None
        if exc.status == 403:
            report.add(check, WARN if check == "gpus" else FAIL,
                       f"forbidden ({exc.reason}): the current user may not read it")
        else:
            report.add(check, FAIL, f"API error {exc.status} {exc.reason}")
        return None
    except Exception as exc:  # urllib3 connection errors
        raise ClusterError(f"Kubernetes API unreachable: {type(exc).__name__}: {str(exc)[:200]}") from None


def _failed(report: Report, check: str) -> bool:
    return any(c.name == check for c in report.checks)

"""The Kubernetes manifests, checked statically (no API server here): every kustomize overlay
(`kubectl kustomize`) validates against the Kubernetes schemas in strict mode, lives in its own
namespace with everything that names a namespace following it (RoleBinding subjects, endpoints),
leaves KFP's kfp-launcher ConfigMap alone, keeps the names other parts rely on (`taml cluster
doctor`, the pipelines), and holds to least privilege: one namespace-scoped Role with named verbs
and resources, Secrets referenced and never shipped, every container non-root, read-only, without
privileges and with resource limits, images pinned."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
BUILDS = ["overlays/local", "overlays/aws", "overlays/kubeflow", "overlays/profile"]
# Each overlay's namespace; whether it owns it (ships the Namespace object), and where MLflow runs.
NAMESPACES = {"overlays/local": "taml", "overlays/aws": "taml", "overlays/kubeflow": "kubeflow",
              "overlays/profile": "kubeflow-user-example-com"}
OWNS_NAMESPACE = {"overlays/local", "overlays/aws"}
SERVICES = {"overlays/local", "overlays/aws", "overlays/kubeflow"}  # MLflow and PostgreSQL in the build
KFP_SECRET = "mlpipeline-minio-artifact"  # KFP's own MinIO keys, read by its launcher
# The newest Kubernetes whose schemas the pinned kubernetes-validate ships.
KUBERNETES_VERSION = "1.37.0"
REFERENCED_SECRETS = {"taml-s3-credentials", "taml-postgres"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl is not installed (Debian package kubectl): cannot run kustomize")


def kustomize(build: str | Path) -> list[dict]:
    done = subprocess.run(["kubectl", "kustomize", str(MANIFESTS / build)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=BUILDS)
def built(request) -> tuple[str, list[dict]]:
    return request.param, kustomize(request.param)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for d in docs:
        if d["kind"] == "CronJob":
            specs.append((d["metadata"]["name"], d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif d["kind"] in WORKLOADS:
            specs.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
    return specs


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


# ------------------------------------------------------------------ schema

def test_every_document_validates_strictly_against_the_kubernetes_schemas(built):
    import kubernetes_validate

    assert KUBERNETES_VERSION == kubernetes_validate.utils.latest_version()
    build, docs = built
    assert docs, f"{build} builds nothing"
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except Exception as error:  # report which document and why
            pytest.fail(f"{build}: {doc['kind']}/{doc['metadata']['name']}: {error}")


def test_strict_validation_rejects_a_misspelled_field():
    import kubernetes_validate

    service = by_kind(kustomize("overlays/local"), "Service")["mlflow"]
    service["spec"]["prots"] = service["spec"].pop("ports")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


def test_everything_namespaced_lives_in_the_overlays_namespace(built):
    build, docs = built
    namespace = NAMESPACES[build]
    cluster_scoped = {"Namespace", "PriorityClass"}
    for doc in docs:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"].get("namespace") == namespace, f"{build}: {doc['kind']}/{doc['metadata']['name']}"
    assert set(by_kind(docs, "Namespace")) == ({namespace} if build in OWNS_NAMESPACE else set())
    assert {d["kind"] for d in docs if "namespace" not in d["metadata"]} <= cluster_scoped
    # Nothing names a namespace the overlay is not in, but the endpoints of a profile's services in `taml`.
    text = yaml.safe_dump_all(docs)
    assert "kfp-launcher" not in by_kind(docs, "ConfigMap"), f"{build} overwrites KFP's kfp-launcher ConfigMap"
    if namespace != "taml":
        stray = [line for line in text.splitlines() if re.search(r"\btaml\.svc|namespace: taml$", line)]
        allowed = ["MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL"] if build == "overlays/profile" else []
        assert all(any(key in line for key in allowed) for line in stray), stray


@pytest.mark.parametrize("overlay", ["overlays/local", "overlays/aws", "overlays/kubeflow", "overlays/profile"])
def test_changing_an_overlays_namespace_in_one_place_moves_everything(overlay, tmp_path):
    """Copy the overlay, change `namespace:` in namespaced/kustomization.yaml only: the RoleBinding's
    subject and the endpoints of the services it deploys follow."""
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    inner = copy / overlay / "namespaced" / "kustomization.yaml"
    text = inner.read_text()
    assert text.count(f"namespace: {NAMESPACES[overlay]}\n") == 1
    inner.write_text(text.replace(f"namespace: {NAMESPACES[overlay]}\n", "namespace: ml-team-7\n"))
    docs = kustomize(copy / overlay)
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] not in ("Namespace", "PriorityClass")} == {
        "ml-team-7"}
    [subject] = by_kind(docs, "RoleBinding")["taml-pipeline-runner"]["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": "taml-pipeline-runner", "namespace": "ml-team-7"}
    endpoints = by_kind(docs, "ConfigMap")["taml-endpoints"]["data"]
    if overlay in SERVICES:
        assert endpoints["MLFLOW_TRACKING_URI"] == "http://mlflow.ml-team-7.svc.cluster.local:5000"
        args = by_kind(docs, "Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"][0]["args"]
        [hosts] = [a.split("=", 1)[1].split(",") for a in args if a.startswith("--allowed-hosts=")]
        import fnmatch
        assert any(fnmatch.fnmatch("mlflow.ml-team-7.svc.cluster.local:5000", h) for h in hosts), hosts
    else:  # a profile reaches MLflow where it runs, in `taml`
        assert endpoints["MLFLOW_TRACKING_URI"] == "http://mlflow.taml.svc.cluster.local:5000"
    if overlay == "overlays/local":
        assert endpoints["AWS_ENDPOINT_URL"] == "http://minio.ml-team-7.svc.cluster.local:9000"
        assert set(by_kind(docs, "Namespace")) == {"ml-team-7"}


# ------------------------------------------------------------------ the names others rely on

def test_the_names_the_doctor_and_the_pipelines_use(built):
    import sys

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from pipelines.rounds import ENDPOINTS_CONFIGMAP, ENDPOINTS_ENV

    build, docs = built
    assert "taml-pipeline-runner" in by_kind(docs, "ServiceAccount")
    endpoints = by_kind(docs, "ConfigMap")[ENDPOINTS_CONFIGMAP]["data"]
    assert set(ENDPOINTS_ENV) <= set(endpoints), set(ENDPOINTS_ENV) - set(endpoints)  # every key a step reads
    mlflow_namespace = NAMESPACES[build] if build in SERVICES else "taml"
    assert endpoints["MLFLOW_TRACKING_URI"] == f"http://mlflow.{mlflow_namespace}.svc.cluster.local:5000"
    if build in SERVICES:
        mlflow = by_kind(docs, "Service")["mlflow"]
        assert [p["port"] for p in mlflow["spec"]["ports"]] == [5000]
    assert endpoints["TAML_BUCKET"] and endpoints["TAML_ARTIFACT_ROOT"].startswith(f"s3://{endpoints['TAML_BUCKET']}/")
    assert endpoints["TAML_KFP_HOST"].startswith("http://ml-pipeline.kubeflow.svc")
    assert "taml-gpu-training" in by_kind(docs, "PriorityClass")
    assert endpoints["AWS_ENDPOINT_URL"].startswith("http") and endpoints["AWS_DEFAULT_REGION"]


def test_standalone_kfp_uses_kfps_minio_and_a_profile_gets_only_the_runner():
    kubeflow, profile = kustomize("overlays/kubeflow"), kustomize("overlays/profile")
    endpoints = by_kind(kubeflow, "ConfigMap")["taml-endpoints"]["data"]
    assert endpoints["AWS_ENDPOINT_URL"] == "http://minio-service.kubeflow.svc.cluster.local:9000"
    assert endpoints["TAML_BUCKET"] == "mlpipeline"
    assert not any(d["metadata"]["name"].startswith("minio") for d in kubeflow)  # KFP's own MinIO: no clash
    assert {d["kind"] for d in profile} == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "PriorityClass"}


def test_local_runs_minio_with_its_bucket_job_and_aws_runs_none():
    local, aws = kustomize("overlays/local"), kustomize("overlays/aws")
    minio = by_kind(local, "Service")["minio"]
    assert 9000 in [p["port"] for p in minio["spec"]["ports"]]
    assert by_kind(local, "ConfigMap")["taml-endpoints"]["data"]["AWS_ENDPOINT_URL"] == "http://minio.taml.svc.cluster.local:9000"
    job = by_kind(local, "Job")["taml-create-bucket"]
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "mc mb --ignore-existing" in script
    assert "minio-data" in by_kind(local, "PersistentVolumeClaim")
    assert not any(d["metadata"]["name"].startswith("minio") or d["kind"] == "Job" for d in aws)
    assert "amazonaws.com" in by_kind(aws, "ConfigMap")["taml-endpoints"]["data"]["AWS_ENDPOINT_URL"]


def test_aws_service_accounts_carry_an_iam_role():
    accounts = by_kind(kustomize("overlays/aws"), "ServiceAccount")
    for name in ["taml-pipeline-runner", "taml-mlflow"]:
        arn = accounts[name]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", arn), arn
    for name, account in by_kind(kustomize("overlays/local"), "ServiceAccount").items():
        assert "eks.amazonaws.com/role-arn" not in account["metadata"].get("annotations", {}), name


def test_mlflow_serves_s3_artifacts_from_a_postgres_backend_without_a_password_in_its_arguments(built):
    build, docs = built
    if build not in SERVICES:
        assert "mlflow" not in by_kind(docs, "Deployment")  # a profile uses the MLflow in `taml`
        return
    container = by_kind(docs, "Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    option = {a.split("=", 1)[0]: a.split("=", 1)[1] if "=" in a else True for a in args}
    assert option["--backend-store-uri"].startswith("postgresql://")
    assert option["--artifacts-destination"].startswith("s3://") and option["--serve-artifacts"] is True
    assert "PASSWORD" not in " ".join(args).upper()
    env = {e["name"]: e for e in container["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "taml-postgres"
    # every $(VAR) in the arguments is defined in the container's environment
    for name in re.findall(r"\$\((\w+)\)", " ".join(args)):
        assert name in env, f"{build}: mlflow argument uses $({name}), which is not in its env"
    assert "postgres-data" in by_kind(docs, "PersistentVolumeClaim")
    postgres = by_kind(docs, "Service")["postgres"]
    assert f"@postgres:{postgres['spec']['ports'][0]['port']}/" in option["--backend-store-uri"]


@pytest.mark.parametrize("overlay", ["overlays/local", "overlays/aws", "overlays/kubeflow"])
def test_every_key_a_container_reads_exists(overlay):
    """A misspelled ConfigMap or Secret key only shows on a cluster (CreateContainerConfigError)."""
    docs = kustomize(overlay)
    config_maps = {name: set(d["data"]) for name, d in by_kind(docs, "ConfigMap").items()}
    template = yaml.safe_load_all((MANIFESTS / "secret-template.yaml").read_text())
    secrets = {d["metadata"]["name"]: set(d["stringData"]) for d in template}
    for name, spec in pod_specs(docs):
        for container in containers(spec):
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    assert ref["key"] in config_maps.get(ref["name"], set()), f"{overlay}: {name} reads {ref}"
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    assert ref["key"] in secrets.get(ref["name"], set()), f"{overlay}: {name} reads {ref}"


def test_every_service_selects_a_workload_and_every_claim_is_defined(built):
    build, docs = built
    templates = [d["spec"]["template"]["metadata"]["labels"] for d in docs if d["kind"] == "Deployment"]
    for name, service in by_kind(docs, "Service").items():
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in templates), f"{build}: Service {name} selects nothing"
    claims = set(by_kind(docs, "PersistentVolumeClaim"))
    for name, spec in pod_specs(docs):
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, f"{build}: {name}"


# ------------------------------------------------------------------ least privilege

def rbac_problems(docs: list[dict], namespace: str = "taml") -> list[str]:
    """Everything that breaks the least-privilege rules, as readable lines (empty: fine)."""
    problems = []
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in {"ClusterRole", "ClusterRoleBinding"}:
            problems.append(f"{kind}/{name}: cluster-wide")
        if kind == "RoleBinding" and doc["roleRef"]["kind"] != "Role":
            problems.append(f"RoleBinding/{name} binds a {doc['roleRef']['kind']}")
        if kind == "RoleBinding":
            for subject in doc["subjects"]:
                if subject["kind"] != "ServiceAccount" or subject.get("namespace") != namespace:
                    problems.append(f"RoleBinding/{name} binds {subject}")
        if kind != "Role":
            continue
        for rule in doc.get("rules", []):
            for field in ["apiGroups", "resources", "verbs", "resourceNames"]:
                if "*" in rule.get(field, []):
                    problems.append(f"Role/{name}: * in {field}")
            if rule.get("nonResourceURLs"):
                problems.append(f"Role/{name}: nonResourceURLs")
            if {"escalate", "bind", "impersonate"} & set(rule["verbs"]):
                problems.append(f"Role/{name}: {rule['verbs']}")
            if "secrets" in rule["resources"]:
                if set(rule["verbs"]) != {"get"} or not rule.get("resourceNames"):
                    problems.append(f"Role/{name}: secrets beyond get on named Secrets: {rule}")
                elif not set(rule["resourceNames"]) <= REFERENCED_SECRETS | {KFP_SECRET}:
                    problems.append(f"Role/{name}: reads other Secrets {rule['resourceNames']}")
            if {"pods/exec", "pods/attach", "serviceaccounts/token"} & set(rule["resources"]):
                problems.append(f"Role/{name}: {rule['resources']}")
    return problems


def test_rbac_is_namespace_scoped_and_minimal(built):
    build, docs = built
    namespace = NAMESPACES[build]
    assert rbac_problems(docs, namespace) == [], build
    roles = by_kind(docs, "Role")
    assert set(roles) == {"taml-pipeline-runner"}
    binding = by_kind(docs, "RoleBinding")["taml-pipeline-runner"]
    assert binding["roleRef"]["name"] == "taml-pipeline-runner"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "taml-pipeline-runner", "namespace": namespace}]
    granted = {(g, r, v) for rule in roles["taml-pipeline-runner"]["rules"]
               for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    allowed = {("argoproj.io", "workflowtaskresults", "create"), ("argoproj.io", "workflowtaskresults", "patch"),
               ("", "configmaps", "get"), ("", "secrets", "get")}
    assert granted <= allowed, granted - allowed
    secrets_read = ("", "secrets", "get") in granted
    assert secrets_read == (build != "overlays/aws"), "with IRSA the runner reads no Secret"
    names = {n for rule in roles["taml-pipeline-runner"]["rules"] if "secrets" in rule["resources"]
             for n in rule["resourceNames"]}
    assert (KFP_SECRET in names) == (build in ("overlays/kubeflow", "overlays/profile")), names


def test_the_least_privilege_check_catches_what_it_should():
    bad = [
        {"kind": "ClusterRole", "metadata": {"name": "x"}, "rules": []},
        {"kind": "Role", "metadata": {"name": "wide"},
         "rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]},
                   {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},
                   {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]},
        {"kind": "RoleBinding", "metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "admin"},
         "subjects": [{"kind": "User", "name": "someone"}]},
    ]
    problems = "\n".join(rbac_problems(bad))
    for expected in ["cluster-wide", "* in resources", "secrets beyond get", "pods/exec", "binds a ClusterRole", "binds {"]:
        assert expected in problems, expected


def test_secrets_are_referenced_never_shipped(built):
    build, docs = built
    assert not [d for d in docs if d["kind"] == "Secret"], f"{build} ships a Secret"
    names = set()
    for _, spec in pod_specs(docs):
        names |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for container in containers(spec):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
            assert not any("secretRef" in source for source in container.get("envFrom", []))
            for env in container.get("env", []):  # no literal credential in a value
                assert not re.search(r"(KEY|SECRET|PASSWORD|TOKEN)", env["name"]) or "valueFrom" in env, env["name"]
    assert names <= REFERENCED_SECRETS, names
    assert bool(names) == (build in SERVICES), names


def test_the_secret_template_is_a_template_and_no_kustomization_includes_it():
    template = MANIFESTS / "secret-template.yaml"
    secrets = list(yaml.safe_load_all(template.read_text()))
    assert {s["metadata"]["name"] for s in secrets} == REFERENCED_SECRETS
    for secret in secrets:
        assert set(secret["stringData"].values()) == {"CHANGE_ME"}, secret["metadata"]["name"]
        assert "data" not in secret
    for kustomization in MANIFESTS.rglob("kustomization.yaml"):
        assert "secret-template" not in kustomization.read_text(), kustomization
        assert "secretGenerator" not in kustomization.read_text(), kustomization


def test_every_container_runs_non_root_read_only_unprivileged_with_limits(built):
    build, docs = built
    specs = pod_specs(docs)
    assert ({name for name, _ in specs} >= {"mlflow", "postgres"}) == (build in SERVICES)
    for name, spec in specs:
        pod_context = spec.get("securityContext", {})
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, f"{name}: needs no Kubernetes API token"
        for container in containers(spec):
            where = f"{build}: {name}/{container['name']}"
            context = container.get("securityContext", {})
            assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, where
            assert context.get("runAsUser", pod_context.get("runAsUser", 1)) != 0, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("privileged", False) is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            resources = container.get("resources", {})
            for kind in ["requests", "limits"]:
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: no {kind}"
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        assert not any("hostPath" in v for v in spec.get("volumes", [])), name


def test_every_image_is_pinned_by_tag(built):
    build, docs = built
    for name, spec in pod_specs(docs):
        for container in containers(spec):
            image = container["image"]
            repository, _, tag = image.rpartition(":")
            assert repository and "/" not in tag and tag != "latest" and re.search(r"\d", tag), f"{build}: {name}: {image}"

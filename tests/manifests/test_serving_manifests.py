"""manifests/serving/: the KServe InferenceService of a champion validates in strict mode against
KServe's own CRD schema (vendored with its provenance, manifests/serving/schema/PROVENANCE.md), the
ServiceAccount against the Kubernetes schemas; the service is the mlflow format over the v2
protocol from S3, with resources, probes, non-root and the S3 keys only as a Secret reference."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / "manifests" / "serving"
SCHEMA = SERVING / "schema" / "inferenceservice-v1beta1.json.gz"
PROVENANCE = SERVING / "schema" / "PROVENANCE.md"
KUBERNETES_VERSION = "1.37.0"


def _strict(schema):
    """Every object schema that lists its properties admits no others (unless it says it keeps
    unknown fields): a misspelled field is an error, as with `kubectl apply --validate=strict`."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out and \
                not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    return [_strict(s) for s in schema] if isinstance(schema, list) else schema


@pytest.fixture(scope="module")
def validator():
    import jsonschema

    raw = gzip.decompress(SCHEMA.read_bytes())
    assert hashlib.sha256(raw).hexdigest() in PROVENANCE.read_text()  # the bytes the provenance describes
    schema = _strict(json.loads(raw))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def docs():
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (Debian package kubectl): cannot run kustomize")
    done = subprocess.run(["kubectl", "kustomize", str(SERVING)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return {d["kind"]: d for d in yaml.safe_load_all(done.stdout) if d}


def _errors(validator, doc):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_provenance_names_the_release_commit_and_file():
    text = PROVENANCE.read_text()
    for fact in ("https://github.com/kserve/kserve", "v0.20.0", "1fb781055dd1567164358233e1125142ca6ef1fe",
                 "config/crd/full/serving.kserve.io_inferenceservices.yaml", "Apache-2.0"):
        assert fact in text


def test_the_inference_service_validates_strictly_against_kserves_schema(validator, docs):
    assert set(docs) == {"InferenceService", "ServiceAccount"}
    assert _errors(validator, docs["InferenceService"]) == []


def test_strict_validation_catches_a_misspelled_field_and_a_wrong_type(validator, docs):
    bad = copy.deepcopy(docs["InferenceService"])
    bad["spec"]["predictor"]["model"]["storageUrl"] = bad["spec"]["predictor"]["model"].pop("storageUri")
    assert any("storageUrl" in e for e in _errors(validator, bad))
    bad = copy.deepcopy(docs["InferenceService"])
    bad["spec"]["predictor"]["minReplicas"] = "one"
    assert any("minReplicas" in e for e in _errors(validator, bad))


def test_the_service_account_validates_against_the_kubernetes_schemas(docs):
    import kubernetes_validate

    kubernetes_validate.validate(docs["ServiceAccount"], KUBERNETES_VERSION, strict=True)


def test_the_champion_is_served_as_mlflow_over_v2_from_s3_with_limits_probes_and_no_root(docs):
    service, account = docs["InferenceService"], docs["ServiceAccount"]
    predictor = service["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"]["name"] == "mlflow" and model["protocolVersion"] == "v2"
    assert model["storageUri"].startswith("s3://taml/mlflow-artifacts/")
    assert {"cpu", "memory"} <= set(model["resources"]["requests"]) and {"cpu", "memory"} <= set(model["resources"]["limits"])
    assert model["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert model["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    pod = predictor["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0 and pod["seccompProfile"]["type"] == "RuntimeDefault"
    container = model["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["capabilities"]["drop"] == ["ALL"]
    # S3 keys: only the Secret's name, through the service account KServe's storage initializer uses.
    assert predictor["serviceAccountName"] == account["metadata"]["name"]
    assert account["secrets"] == [{"name": "taml-s3-credentials"}]
    text = yaml.safe_dump_all([service, account])
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "password"):
        assert name not in text

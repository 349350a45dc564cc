"""No credential reaches what a search writes, and nothing the project loads is unpickled."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest

from transfer_automl.cli import main

pytestmark = pytest.mark.e2e

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIATESTLEAKCANARY01",
    "AWS_SECRET_ACCESS_KEY": "leak-canary-secret-7f3a9c1e",
    "MLFLOW_TRACKING_PASSWORD": "leak-canary-mlflow-5b2d",
    "MLFLOW_TRACKING_TOKEN": "leak-canary-token-91e4",
}
ROOT = Path(__file__).resolve().parents[2]


def test_no_credential_reaches_ledger_checkpoint_mlflow_or_output(tmp_path, monkeypatch, capsys, toy_table,
                                                                  taml_home):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    assert main(["search", "--table", str(toy_table), "--metric-columns", "t1,t2", "--trials", "6", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr()
    # the search's files and the shared MLflow store (TAML_HOME) with its artifacts
    written = [p for root in (out, taml_home) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in written) and any(p.suffix == ".parquet" for p in written)
    # Everything the search wrote, byte for byte, plus every MLflow param, tag and metric key.
    blobs = [p.read_bytes() for p in written] + [printed.out.encode(), printed.err.encode()]
    with sqlite3.connect(taml_home / "mlflow.db") as db:
        for table in ("params", "tags", "metrics", "runs", "experiments"):
            blobs.append(repr(db.execute(f"select * from {table}").fetchall()).encode())
    for name, value in SECRETS.items():
        assert not any(value.encode() in blob for blob in blobs), f"{name} leaked into what the search wrote"


def test_pipeline_yaml_carries_no_credentials():
    import yaml

    for path in (ROOT / "pipelines").rglob("*.yaml"):
        # A credential may be named only where a step's pod maps it from a Kubernetes Secret
        # (kfp-kubernetes secretAsEnv); nowhere else: no parameter, default or literal env.
        docs = list(yaml.safe_load_all(path.read_text()))
        for doc in docs:
            for executor in doc.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get(
                    "executors", {}).values():
                executor.pop("secretAsEnv", None)
        text = yaml.safe_dump_all(docs)
        for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_PASSWORD"):
            assert name not in text, f"{path} names {name}: credentials come from Kubernetes Secrets"


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_nothing_is_unpickled():
    offenders = []
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "components").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py"),
                 *(ROOT / "benchmarks").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in {"pickle", "cloudpickle", "dill", "joblib"} for n in names):
                    offenders.append(f"{path}: imports a pickle library")
        for call in _calls(tree):
            name = ast.unparse(call.func)
            keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if name.endswith("torch.load") and keywords.get("weights_only") != "True":
                offenders.append(f"{path}:{call.lineno}: torch.load without weights_only=True")
            if name.endswith(("np.load", "numpy.load")) and keywords.get("allow_pickle", "False") != "False":
                offenders.append(f"{path}:{call.lineno}: np.load with allow_pickle")
    assert offenders == []

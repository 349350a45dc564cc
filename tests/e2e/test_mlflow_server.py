"""A real `mlflow server` (sqlite backend, --serve-artifacts into a moto S3 bucket over HTTP): a tiny
text search logs its runs, stepped metrics, artifacts and champion model through the server, and the
artifacts are objects in the bucket."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchSettings

pytestmark = pytest.mark.e2e

SPACE = {"name": "server-tiny", "decisions": [
    {"name": "input_module", "choices": ["random-hashed-64"]},
    {"name": "fine_tune", "choices": [False, True]},
    {"name": "hidden_layers", "choices": [1]},
    {"name": "hidden_size", "choices": [32]},
    {"name": "activation", "choices": ["relu"]},
    {"name": "normalization", "choices": ["none"]},
    {"name": "dropout", "choices": [0.0]},
    {"name": "deep_lr", "choices": [0.1]},
    {"name": "deep_reg", "choices": [0.0001]},
    {"name": "wide_lr", "choices": [0.1]},
    {"name": "wide_reg", "choices": [0.0001]},
    {"name": "training_samples", "choices": [10000]},
]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path, s3_env, s3_bucket):
    """`mlflow server` on a free port, artifacts served from s3://<bucket>/mlartifacts on moto; its url."""
    from transfer_automl.tracking.mlflow import _create_sqlite_store_atomically

    db = tmp_path / "server.db"
    _create_sqlite_store_atomically(f"sqlite:///{db}")  # the schema, so the server starts without migrating
    port = _free_port()
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_env}  # the AWS_* variables come from s3_env
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
         "--serve-artifacts", "--artifacts-destination", f"s3://{s3_bucket}/mlartifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own session: it and its workers
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_search_runs_metrics_artifacts_and_champion_arrive_through_the_server(
        mlflow_server, s3_bucket, tmp_path, samples_dir, feature_cache_dir, monkeypatch):
    import boto3
    import mlflow
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    result = run_search(SearchSettings(tasks=("mpqa",), trials=3, batch_size=1, out=str(tmp_path / "run"),
                                       space=str(space), data_dir=str(samples_dir), cache_dir=str(feature_cache_dir),
                                       search_id="server", progress=False))
    assert result.tracking_location == mlflow_server
    (champion,) = result.champions.registered

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    experiment = client.get_experiment_by_name("taml/server")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's store, not a local path
    runs = client.search_runs([experiment.experiment_id])
    (controller,) = [r for r in runs if r.data.tags["taml.role"] == "controller"]
    children = [r for r in runs if r.data.tags["taml.role"] == "child"]
    assert len(children) == 3 and controller.info.status == "FINISHED"
    assert all(r.data.tags["mlflow.parentRunId"] == controller.info.run_id for r in children)
    assert [m.step for m in client.get_metric_history(controller.info.run_id, "controller/loss")] == [0, 1, 2]
    assert {a.path for a in client.list_artifacts(controller.info.run_id)} == {"checkpoint.pt", "space.yaml", "settings.json",
                                                                            "refit.json"}  # the champion refit's
    assert yaml.safe_load(open(client.download_artifacts(controller.info.run_id, "space.yaml")))["name"] == "server-tiny"

    version = client.get_model_version_by_alias("taml-mpqa", "champion")
    assert str(version.version) == champion.version and version.run_id == champion.run_id
    assert version.tags["taml.search_id"] == "server" and version.run_id in {r.info.run_id for r in children}
    mlflow.set_tracking_uri(mlflow_server)
    try:
        model = mlflow.pyfunc.load_model("models:/taml-mpqa@champion")
    finally:
        mlflow.set_tracking_uri(None)
    predicted = model.predict(pd.DataFrame({"text": ["a fine day", "a terrible day"]}))
    assert list(predicted.columns) == ["label", "prob_neg", "prob_pos"] and set(predicted["label"]) <= {"neg", "pos"}

    # Every artifact is an object in the bucket: the server wrote it there over S3's HTTP API.
    keys = [o["Key"] for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
            for o in page.get("Contents", [])]
    assert all(k.startswith("mlartifacts/") for k in keys)
    names = {k.rsplit("/", 1)[-1] for k in keys}
    assert {"checkpoint.pt", "space.yaml", "MLmodel", "child.safetensors", "meta.json", "requirements.txt"} <= names
    assert any(k.endswith(f"{controller.info.run_id}/artifacts/checkpoint.pt") for k in keys)


def test_two_searches_share_the_server_as_a_user_browses_it(mlflow_server, tmp_path, samples_dir, feature_cache_dir,
                                                            monkeypatch):
    """What the UI shows (issue 18): model-training experiments, child runs named by task and trial
    number, Duration = the trial's time, each task's data as a dataset input; two searches in one
    registry, the alias `champion` on the better search's version."""
    from mlflow.tracking import MlflowClient

    from transfer_automl.search import Ledger
    from transfer_automl.tracking.mlflow import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    results = {name: run_search(SearchSettings(
        tasks=("mpqa", "sms_spam"), trials=4, batch_size=2, seed=seed, out=str(tmp_path / name), space=str(space),
        data_dir=str(samples_dir), cache_dir=str(feature_cache_dir), search_id=name, progress=False))
        for name, seed in (("first", 0), ("second", 5))}
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)

    for name, result in results.items():
        experiment = client.get_experiment_by_name(f"taml/{name}")
        assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND == "custom_model_development"
        assert result.browse_url == (f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs"
                                     "?workflowType=machine_learning")
        runs = client.search_runs([experiment.experiment_id])
        (controller,) = [r for r in runs if r.data.tags["taml.role"] == "controller"]
        children = {r.data.tags["taml.trial_id"]: r for r in runs if r.data.tags["taml.role"] == "child"}
        rows = Ledger(tmp_path / name / "ledger").read().to_pylist()
        assert sorted(children) == sorted(r["trial_id"] for r in rows)
        hashes = {}
        for row in rows:
            run = children[row["trial_id"]]
            step, k = int(row["controller_step"]), int(row["trial_id"].rsplit("/", 1)[1])
            assert run.info.run_name == f"{row['task']} #{step * 2 + k + 1}"  # task and trial number 1..4
            # Duration = the trial's own start and end, not the milliseconds of logging it
            assert run.info.start_time == int(row["started_at"].timestamp() * 1000)
            assert run.info.end_time == int(row["ended_at"].timestamp() * 1000)
            assert run.info.end_time - run.info.start_time >= int(row["duration_s"] * 1000) - 1 > 0
            (data,) = run.inputs.dataset_inputs
            assert data.dataset.name == row["task"] and data.dataset.source_type == "local"
            assert json.loads(data.dataset.source) == {"uri": str(samples_dir / f"{row['task']}.parquet")}
            assert json.loads(data.dataset.profile) == {"num_rows": 1000}
            assert {t.key: t.value for t in data.tags} == {"mlflow.data.context": "training"}
            hashes[row["task"]] = data.dataset.digest
        assert hashes == {t: hashlib.sha256((samples_dir / f"{t}.parquet").read_bytes()).hexdigest()[:16]
                          for t in ("mpqa", "sms_spam")}  # the content hash of each task file
        assert sorted((d.dataset.name, d.dataset.digest) for d in controller.inputs.dataset_inputs) == \
            sorted(hashes.items())

    # One registry: each task has one version per search, and the alias on the better one (the
    # first search's when the second is not strictly better).
    for task in ("mpqa", "sms_spam"):
        versions = {v.tags["taml.search_id"]: v for v in client.search_model_versions(f"name = 'taml-{task}'")}
        assert sorted(versions) == ["first", "second"]
        first, second = (float(versions[n].tags["taml.val_accuracy"]) for n in ("first", "second"))
        better = "second" if second > first else "first"
        assert client.get_model_version_by_alias(f"taml-{task}", "champion").version == versions[better].version
        (registered,) = [r for r in results["second"].champions.registered if r.candidate.task == task]
        assert registered.champion == (better == "second") and registered.previous_champion == versions["first"].version

"""A search whose state lives on S3 (a real HTTP endpoint: moto's threaded server): run_search,
resume, the pipeline steps, the CLI, checksummed checkpoints, the feature cache and task files."""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pyarrow.dataset as ds
import pytest

from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401
from same_state import assert_same_state  # tests/ is on the path, like s3_fixtures
from transfer_automl.cli import main
from transfer_automl.errors import CheckpointError, ConfigError, TaskError
from transfer_automl.search import Ledger, load_checkpoint
from transfer_automl.steps import pipeline_steps as steps
from transfer_automl.steps.search import run_search
from transfer_automl.storage import get_store
from transfer_automl.study import SearchSettings
from transfer_automl.tasks import load_task
from transfer_automl.tasks.features import FeatureCache
from transfer_automl.tracking import MemoryTracker

pytestmark = pytest.mark.e2e

_VOLATILE = ("started_at", "ended_at", "duration_s", "expected_cost_s")  # times, and estimates made of them


@pytest.fixture()
def work_dir(tmp_path, monkeypatch):
    """The local working directory of S3 searches (default MLflow store), inside tmp_path."""
    monkeypatch.setenv("TAML_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "work"


def _settings(out, toy_table, **overrides) -> SearchSettings:
    values = dict(tasks=(), trials=4, out=str(out), table=str(toy_table), metric_columns=("t1", "t2"),
                  method="reinforce", batch_size=2, seed=5, search_id="s3", progress=False)
    values.update(overrides)
    return SearchSettings(**values)


def _rows(ledger_root) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in _VOLATILE} for r in Ledger(ledger_root).read().to_pylist()]


def _round_files(rounds: int, children: int) -> list[str]:
    """rounds/<k>/trials.json and rounds/<k>/results/<i>.json, in the store's (sorted) order."""
    return [f"rounds/{k:06d}/{name}" for k in range(rounds)
            for name in [*(f"results/{i:03d}.json" for i in range(children)), "trials.json"]]


def _without_location(checkpoint: dict) -> dict:
    """The checkpoint records the settings: `out` is where the search lives, `init_from` how this
    process opened it (scratch, or resume for a search continued)."""
    settings = {k: v for k, v in checkpoint["search_settings"].items() if k not in ("out", "init_from")}
    return {**checkpoint, "search_settings": settings}


def test_a_search_on_s3_resumes_and_matches_a_local_one(s3_bucket, tmp_path, toy_table, work_dir):
    out = f"s3://{s3_bucket}/runs/demo"
    first = run_search(_settings(out, toy_table), tracker=MemoryTracker())
    assert first.trials_run == 4 and first.checkpoint == f"{out}/checkpoint.pt"
    store = get_store(out)
    assert store.list() == ["checkpoint.pt", "ledger/round-000000.parquet", "ledger/round-000001.parquet",
                            *_round_files(2, 2), "settings.json", "space.yaml"]
    assert store.get_bytes("checkpoint.pt").startswith(b"TAMLSHA256 ")
    with pytest.raises(ConfigError, match="already holds a search"):
        run_search(_settings(out, toy_table, trials=6), tracker=MemoryTracker())

    resumed = run_search(_settings(out, toy_table, trials=6, init_from="resume"), tracker=MemoryTracker())
    assert resumed.trials_run == 2
    local = tmp_path / "local"
    run_search(_settings(local, toy_table, trials=6), tracker=MemoryTracker())
    assert _rows(f"{out}/ledger") == _rows(local / "ledger") and len(_rows(local / "ledger")) == 6
    assert_same_state(_without_location(load_checkpoint(f"{out}/checkpoint.pt")),
                _without_location(load_checkpoint(local / "checkpoint.pt")))
    # The ledger on S3 is one Parquet dataset, as locally.
    fs, path = store.arrow_location("ledger")
    assert ds.dataset(path, filesystem=fs, format="parquet").to_table().num_rows == 6
    # With a given tracker, the local working directory holds only the copies it was handed.
    copies = sorted(p.name for p in work_dir.rglob("*") if p.is_file())
    assert copies == ["checkpoint.pt", "settings.json", "space.yaml"], copies


def test_a_tampered_checkpoint_on_s3_is_refused_naming_it(s3_bucket, toy_table, work_dir):
    out = f"s3://{s3_bucket}/runs/tampered"
    run_search(_settings(out, toy_table, method="rs"), tracker=MemoryTracker())
    client = boto3.client("s3")
    key = "runs/tampered/checkpoint.pt"
    data = bytearray(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    data[-100] ^= 0x01
    client.put_object(Bucket=s3_bucket, Key=key, Body=bytes(data))
    ledger_before = get_store(out).get_bytes("ledger/round-000001.parquet")
    with pytest.raises(CheckpointError, match=f"{out}/checkpoint.pt fails its checksum"):
        run_search(_settings(out, toy_table, method="rs", trials=6, init_from="resume"), tracker=MemoryTracker())
    assert get_store(out).get_bytes("ledger/round-000001.parquet") == ledger_before
    assert get_store(out).list("ledger/") == ["ledger/round-000000.parquet", "ledger/round-000001.parquet"]


def test_pipeline_steps_on_an_s3_search_dir(s3_bucket, tmp_path, toy_table, work_dir):
    from mlflow.tracking import MlflowClient

    search_dir = f"s3://{s3_bucket}/pipelines/run-1"
    settings = {"table": str(toy_table), "metric_columns": ["t1", "t2"], "method": "reinforce", "seed": 5,
                "search_id": "s3"}
    assert steps.init_search(search_dir, settings, 2, 1) == 0
    trials = steps.controller_step(search_dir, 0, 2)
    first = steps.aggregate_rewards(search_dir, 0, [steps.train_child(search_dir, t) for t in reversed(trials)])
    store = get_store(search_dir)
    assert store.list() == ["checkpoint.pt", "ledger/round-000000.parquet", *_round_files(1, 2), "settings.json",
                            "space.yaml"]
    assert json.loads(store.get_bytes("settings.json"))["out"] == search_dir
    # The Study's own tracker: MLflow in the search's local working directory, not in the bucket.
    db = work_dir / "s3" / s3_bucket / "pipelines" / "run-1" / "mlflow.db"
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("taml/s3").experiment_id
    assert len(client.search_runs([experiment])) == 3  # the controller and 2 children

    # A retried round changes nothing.
    checkpoint = store.get_bytes("checkpoint.pt")
    assert steps.controller_step(search_dir, 0, 2) == trials
    again = steps.aggregate_rewards(search_dir, 0, [steps.train_child(search_dir, t) for t in trials])
    assert again["markdown"] == first["markdown"] and again["metrics"] == {}
    assert store.get_bytes("checkpoint.pt") == checkpoint and len(client.search_runs([experiment])) == 3
    # `taml search --resume` continues it from S3, and the whole equals one run_search.
    resumed = run_search(_settings(search_dir, toy_table, trials=4, init_from="resume"), tracker=MemoryTracker())
    assert resumed.trials_run == 2
    loop = tmp_path / "loop"
    run_search(_settings(loop, toy_table), tracker=MemoryTracker())
    assert _rows(f"{search_dir}/ledger") == _rows(loop / "ledger") and len(_rows(loop / "ledger")) == 4
    assert_same_state(_without_location(load_checkpoint(f"{search_dir}/checkpoint.pt")),
                _without_location(load_checkpoint(loop / "checkpoint.pt")))


def test_cli_search_and_sync_with_out_on_s3(s3_bucket, toy_table, work_dir, capsys):
    out = f"s3://{s3_bucket}/cli/demo"
    args = ["search", "--table", str(toy_table), "--metric-columns", "t1,t2", "--method", "rs", "--trials", "3",
            "--out", out, "--search-id", "cli", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    db = work_dir / "s3" / s3_bucket / "cli" / "demo" / "mlflow.db"
    assert f"checkpoint: {out}/checkpoint.pt" in printed
    assert f"mlflow:     sqlite:///{db}" in printed and db.is_file()
    assert Ledger(f"{out}/ledger").read().num_rows == 3
    assert main(["runs", "sync", out]) == 0
    assert "synced 0 new runs, 3 already present" in capsys.readouterr().out


def test_mlflow_tracking_uri_wins_for_an_s3_search(s3_bucket, toy_table, work_dir, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'central.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = run_search(_settings(f"s3://{s3_bucket}/tracked", toy_table, method="rs", trials=2))
    assert result.tracking_location == uri and (tmp_path / "central.db").is_file()
    assert not (work_dir / "s3" / s3_bucket / "tracked" / "mlflow.db").exists()


class _Task:
    """What the feature cache reads of a TextTask."""

    def __init__(self, texts, content_hash="0123abcd"):
        self.name, self.texts, self.content_hash = "toy", texts, content_hash


@pytest.mark.parametrize("where", ["local", "s3"])
def test_feature_cache_hit_miss_and_corrupt_entry(where, tmp_path, request):
    root = str(tmp_path / "cache") if where == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/cache"
    task = _Task(["a", "bb", "ccc"])
    calls = []

    def embed(texts):
        calls.append(len(texts))
        return np.array([[len(t), 1.0] for t in texts])

    first = FeatureCache(root)
    features = first.get(task, "enc", embed)
    assert first.computed == 1 and features.dtype == np.float32 and features.shape == (3, 2)
    key = "toy-0123abcd/enc.npy"  # the task's content hash is part of the key
    store = get_store(root)
    assert store.list() == [key]
    assert np.array_equal(np.load(io.BytesIO(store.get_bytes(key))), features)

    hit = FeatureCache(root)  # a new process: reads the entry
    assert np.array_equal(hit.get(task, "enc", lambda texts: pytest.fail("recomputed a cached entry")), features)
    assert hit.computed == 0 and calls == [3]
    assert FeatureCache(root).get(_Task(task.texts, "ffff0000"), "enc", embed) is not None and calls == [3, 3]

    for corrupt in (store.get_bytes(key)[:40], b"not npy", _npy(np.zeros((2, 2), np.float32)),
                    _npy(np.full((3, 2), np.nan, np.float32))):
        store.put_bytes(key, corrupt)
        again = FeatureCache(root)
        assert np.array_equal(again.get(task, "enc", embed), features)
        assert again.computed == again.replaced == 1
        assert np.array_equal(np.load(io.BytesIO(store.get_bytes(key))), features)  # replaced whole


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_a_task_file_on_s3(s3_bucket, samples_dir):
    uri = f"s3://{s3_bucket}/tasks/mpqa.parquet"
    get_store(f"s3://{s3_bucket}/tasks").put_file("mpqa.parquet", samples_dir / "mpqa.parquet")
    remote, local = load_task(uri), load_task("mpqa", samples_dir)
    assert remote.name == "mpqa" and remote.source == uri
    assert remote.content_hash == local.content_hash and remote.texts == local.texts
    with pytest.raises(TaskError, match=f"s3://{s3_bucket}/tasks/nope.parquet does not exist"):
        load_task(f"s3://{s3_bucket}/tasks/nope.parquet")
    get_store(f"s3://{s3_bucket}/tasks").put_bytes("junk.parquet", b"PAR1 not parquet")
    with pytest.raises(TaskError, match=f"s3://{s3_bucket}/tasks/junk.parquet is not a readable Parquet file"):
        load_task(f"s3://{s3_bucket}/tasks/junk.parquet")

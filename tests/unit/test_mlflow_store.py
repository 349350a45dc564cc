"""Where a search's MLflow runs go by default, and what a user sees there (issue 18): searches
started in one place share one store and registry (`$TAML_HOME/mlflow.db`, else `./mlflow.db`),
recorded in each search's `tracking.json`; an older search keeps its own `<out>/mlflow.db`;
experiments are model-training experiments; child runs are named by task and trial number and
last as long as the trial did. (The same against a real `mlflow server`, with dataset inputs and
the registry: tests/e2e/test_mlflow_server.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transfer_automl.cli import main
from transfer_automl.search import Ledger
from transfer_automl.study import SearchDir


def _search(out: Path, table: Path, *extra: str) -> int:
    return main(["search", "--table", str(table), "--metric-columns", "t1,t2", "--method", "rs", "--trials", "2",
                 "--out", str(out), "--no-progress", *extra])


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _children(uri: str, search_id: str) -> list:
    client = _client(uri)
    experiment = client.get_experiment_by_name(f"taml/{search_id}")
    return client.search_runs([experiment.experiment_id], filter_string="tags.`taml.role` = 'child'")


def test_the_default_home_is_the_working_directory_unless_taml_home(tmp_path, monkeypatch):
    monkeypatch.delenv("TAML_HOME")
    monkeypatch.chdir(tmp_path)
    assert SearchDir("runs/x").default_tracking() == (f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "mlartifacts")
    monkeypatch.setenv("TAML_HOME", str(tmp_path / "home"))
    assert SearchDir("runs/x").default_tracking_uri() == f"sqlite:///{tmp_path}/home/mlflow.db"


def test_searches_share_one_store_kept_from_any_directory(tmp_path, toy_table, taml_home, monkeypatch, capsys):
    from transfer_automl.tracking.mlflow import EXPERIMENT_KIND_TAG

    runs = tmp_path / "runs"
    assert _search(runs / "a", toy_table, "--search-id", "a") == 0
    assert _search(runs / "b", toy_table, "--search-id", "b", "--seed", "1") == 0
    shared = f"sqlite:///{taml_home}/mlflow.db"
    assert f"mlflow:     {shared}" in capsys.readouterr().out
    for name in ("a", "b"):
        assert json.loads((runs / name / "tracking.json").read_text()) == {
            "tracking_uri": shared, "artifact_root": str(taml_home / "mlartifacts")}
        assert not (runs / name / "mlflow.db").exists()
    client = _client(shared)
    assert {e.name: e.tags.get(EXPERIMENT_KIND_TAG) for e in client.search_experiments() if e.name != "Default"} == \
        {"taml/a": "custom_model_development", "taml/b": "custom_model_development"}

    # child runs: `<task> #<trial number>`, from the trial's start to its end
    rows = {r["trial_id"]: r for r in Ledger(runs / "a" / "ledger").read().to_pylist()}
    children = _children(shared, "a")
    assert sorted(r.info.run_name for r in children) == sorted(f"{r['task']} #{i + 1}"
                                                               for i, r in enumerate(rows.values()))
    for run in children:
        row = rows[run.data.tags["taml.trial_id"]]
        assert (run.info.start_time, run.info.end_time) == (int(row["started_at"].timestamp() * 1000),
                                                            int(row["ended_at"].timestamp() * 1000))

    # From another directory and another TAML_HOME, the search keeps its store: sync, resume.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("TAML_HOME", str(elsewhere))
    assert main(["runs", "sync", str(runs / "a")]) == 0
    assert capsys.readouterr().out.strip() == f"search a -> {shared}: synced 0 new runs, 2 already present"
    assert main(["search", "--out", str(runs / "a"), "--resume", "--trials", "3", "--no-progress"]) == 0
    assert len(_children(shared, "a")) == 3
    assert not (elsewhere / "mlflow.db").exists()


def test_a_search_with_its_own_store_keeps_it(tmp_path, toy_table, monkeypatch, capsys):
    """A search from before shared stores has `<out>/mlflow.db` and no tracking.json."""
    out = tmp_path / "old"
    monkeypatch.setenv("TAML_HOME", str(out))  # how such a search looks: its store in its directory
    assert _search(out, toy_table, "--search-id", "old") == 0
    (out / "tracking.json").unlink()
    monkeypatch.setenv("TAML_HOME", str(tmp_path / "shared"))
    assert SearchDir(out).default_tracking() == (f"sqlite:///{out}/mlflow.db", out / "mlartifacts")
    assert main(["search", "--out", str(out), "--resume", "--trials", "3", "--no-progress"]) == 0
    assert f"mlflow:     sqlite:///{out}/mlflow.db" in capsys.readouterr().out
    assert len(_children(f"sqlite:///{out}/mlflow.db", "old")) == 3
    assert json.loads((out / "tracking.json").read_text())["tracking_uri"] == f"sqlite:///{out}/mlflow.db"
    assert not (tmp_path / "shared" / "mlflow.db").exists()


def test_a_search_id_taken_in_the_shared_store_is_refused(tmp_path, toy_table, capsys):
    assert _search(tmp_path / "one", toy_table, "--search-id", "same") == 0
    capsys.readouterr()
    assert _search(tmp_path / "two", toy_table, "--search-id", "same") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taml: error: search_id 'same' is taken in MLflow") and len(err.splitlines()) == 1
    assert f"by the search in {tmp_path / 'one'}" in err and f"({tmp_path / 'two'})" in err


def test_a_damaged_tracking_record_is_refused_naming_it(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "tracking.json").write_text('{"tracking_uri": 3}')
    from transfer_automl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"s/tracking.json: expected .*tracking_uri"):
        SearchDir(tmp_path / "s").default_tracking_uri()


def test_the_installed_mlflow_ui_reads_the_experiment_kind_taml_sets():
    """MLflow has no Python constant for the experiment type: the UI bundle must know the tag and
    the value, and the `workflowType=machine_learning` parameter browse_url relies on."""
    import mlflow

    from transfer_automl.tracking.mlflow import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND

    bundle = "".join(p.read_text(errors="replace") for p in
                     (Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js").glob("*.js"))
    assert f'"{EXPERIMENT_KIND_TAG}"' in bundle and f'CUSTOM_MODEL_DEVELOPMENT="{MODEL_TRAINING_KIND}"' in bundle
    assert 'MACHINE_LEARNING="machine_learning"' in bundle and '"workflowType"' in bundle


def test_a_text_search_hands_its_task_files_to_the_tracker(tmp_path, samples_dir):
    import hashlib

    from transfer_automl.study import Study
    from transfer_automl.tracking import MemoryTracker, TaskData

    tracker = MemoryTracker()
    study = Study.open({"tasks": ["mpqa", "sms_spam"], "trials": 2, "out": str(tmp_path / "s"), "space": "mnms-text",
                        "data_dir": str(samples_dir), "progress": False}, tracker=tracker)
    study.abort()
    assert tracker.datasets == [TaskData(t, str(samples_dir / f"{t}.parquet"),
                                         hashlib.sha256((samples_dir / f"{t}.parquet").read_bytes()).hexdigest()[:16],
                                         1000) for t in ("mpqa", "sms_spam")]


def test_mlflow_dataset_inputs_run_names_and_times_logged_once(tmp_path):
    from datetime import UTC, datetime

    from transfer_automl.tracking import TaskData
    from transfer_automl.tracking.mlflow import MlflowTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    data = [TaskData("t1", str(tmp_path / "t1.parquet"), "aaaa", 10), TaskData("t2", "s3://b/t2.parquet", "bbbb", 20)]
    row = {"trial_id": "x/000003/001", "search_id": "x", "task": "t2", "controller_step": 3, "status": "ok",
           "val_accuracy": 0.5, "test_accuracy": 0.4, "reward": 0.5, "duration_s": 90.0,
           "started_at": datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
           "ended_at": datetime(2026, 1, 2, 3, 5, 40, 456000, tzinfo=UTC)}
    for _ in range(2):  # a resumed search logs again: nothing doubles
        tracker = MlflowTracker(uri)
        tracker.start("x", {"batch_size": 4}, {"taml.search_dir": str(tmp_path / "x")})
        tracker.log_datasets(data)
        tracker.log_trial(row, {"depth": 1})
    client = tracker.client
    controller = client.get_run(tracker.run_id)
    assert sorted((d.dataset.name, d.dataset.digest, d.dataset.source_type) for d in controller.inputs.dataset_inputs) \
        == [("t1", "aaaa", "local"), ("t2", "bbbb", "s3")]
    (child,) = client.search_runs([tracker.experiment_id], filter_string="tags.`taml.role` = 'child'")
    assert child.info.run_name == "t2 #14"  # step 3 of 4 trials, its second: the 14th trial
    assert (child.info.start_time, child.info.end_time) == (1767323045123, 1767323140456)
    assert [(d.dataset.name, json.loads(d.dataset.source)) for d in child.inputs.dataset_inputs] == [
        ("t2", {"uri": "s3://b/t2.parquet"})]
    assert json.loads(child.inputs.dataset_inputs[0].dataset.profile) == {"num_rows": 20}

"""Where a search's data comes from: an s3:// data directory stays a uri, and a pipeline without
data_dir refuses to train on the package's samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401
from transfer_automl.errors import ConfigError, TaskError
from transfer_automl.tasks.registry import (
    SAMPLES_DIR,
    available_tasks,
    data_dir,
    is_samples,
    load_task,
    resolve_task,
)


def test_an_s3_data_dir_is_not_collapsed_to_a_path(monkeypatch):
    assert data_dir("s3://taml/data") == "s3://taml/data"
    assert data_dir("s3://taml/data/") == "s3://taml/data"
    monkeypatch.setenv("TAML_DATA_DIR", "s3://taml/data")
    assert data_dir() == "s3://taml/data"
    assert data_dir("/some/dir") == Path("/some/dir")
    assert not is_samples("s3://taml/data") and is_samples(SAMPLES_DIR) and is_samples(str(SAMPLES_DIR) + "/")


def test_tasks_load_from_an_s3_data_dir(s3_bucket, tmp_path):
    from transfer_automl.storage import get_store

    store = get_store(f"s3://{s3_bucket}/data")
    store.put_file("mpqa.parquet", SAMPLES_DIR / "mpqa.parquet")
    store.put_file("nested/other.parquet", SAMPLES_DIR / "sms_spam.parquet")
    root = f"s3://{s3_bucket}/data/"
    assert resolve_task("mpqa", root) == f"s3://{s3_bucket}/data/mpqa.parquet"
    assert available_tasks(root) == ["mpqa"]
    task = load_task("mpqa", root)
    assert task.name == "mpqa" and len(task.texts) == len(load_task("mpqa", SAMPLES_DIR).texts)
    with pytest.raises(TaskError, match=rf"unknown task 'sms_spam': no s3://{s3_bucket}/data/sms_spam.parquet; "
                                        r"tasks in .*: mpqa"):
        load_task("sms_spam", root)


@pytest.mark.parametrize("settings", [{"tasks": ["mpqa"]}, {"tasks": ["mpqa"], "space": "mnms-text"}])
def test_a_pipeline_without_data_dir_refuses_to_start(tmp_path, settings):
    from transfer_automl.steps import pipeline_steps as steps

    with pytest.raises(ConfigError, match=r"settings.data_dir: not given; the pipeline's pods would train on the "
                                          r"1,000-row samples"):
        steps.init_search(tmp_path / "s", settings, 2, 1)
    assert not (tmp_path / "s").exists()


def test_a_pipeline_with_tables_or_parquet_paths_needs_no_data_dir(tmp_path, toy_table, capsys):
    from transfer_automl.steps import pipeline_steps as steps

    assert steps.init_search(tmp_path / "t", {"table": str(toy_table), "metric_columns": ["t1", "t2"]}, 2, 1) == 0
    shutil.copy(SAMPLES_DIR / "mpqa.parquet", tmp_path / "mine.parquet")
    assert steps.init_search(tmp_path / "p", {"tasks": [str(tmp_path / "mine.parquet")]}, 2, 1) == 0
    assert "WARNING" not in capsys.readouterr().err
    assert steps.init_search(tmp_path / "x", {"tasks": ["mpqa"], "data_dir": str(SAMPLES_DIR)}, 2, 1) == 0
    assert "holds the package's 1,000-row sample tasks" in capsys.readouterr().err  # allowed, loudly


def test_submit_refuses_a_search_without_data_dir_before_anything_is_sent(capsys):
    from transfer_automl.cli import main

    repo = Path(__file__).resolve().parents[2]
    args = ["pipeline", "run", "--local", "multitask_search", "--pipelines-dir", str(repo / "pipelines"),
            "search_dir=/nonexistent/x", 'settings={"tasks": ["mpqa"]}']
    assert main(args) == 2
    assert "pipeline parameter settings.data_dir: not given" in capsys.readouterr().err

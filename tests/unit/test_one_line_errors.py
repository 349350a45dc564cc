"""What the machine or MLflow refuses is one line and exit 2; a bug is one line and exit 1; names
MLflow would refuse are made safe, so no metric is lost."""

from __future__ import annotations

import errno
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transfer_automl import cli
from transfer_automl.cli import main
from transfer_automl.storage import local


def _toy_search(table: Path, out: Path, *extra: str) -> list[str]:
    return ["search", "--table", str(table), "--metric-columns", "t1,t2", "--trials", "4", "--batch-size", "2",
            "--method", "rs", "--out", str(out), "--no-progress", *extra]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_a_tracking_uri_mlflow_rejects_is_refused_before_anything_is_written(tmp_path, toy_table, capsys,
                                                                             monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://bar")
    assert main(_toy_search(toy_table, tmp_path / "s")) == 2
    assert "MLFLOW_TRACKING_URI=foo://bar" in _one_line(capsys)
    assert not (tmp_path / "s").exists()


def test_disk_full_is_one_line_and_the_search_resumes(tmp_path, toy_table, capsys, monkeypatch):
    out = tmp_path / "s"
    real_write = local._write_bytes
    writes = {"n": 0}

    def fills_up(path, data):
        writes["n"] += 1
        if writes["n"] > 6:  # the disk fills after the search has started
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_write(path, data)

    monkeypatch.setattr(local, "_write_bytes", fills_up)
    assert main(_toy_search(toy_table, out)) == 2
    line = _one_line(capsys)
    assert "no space left on the device" in line and "--resume" in line
    monkeypatch.setattr(local, "_write_bytes", real_write)
    assert main(["search", "--out", str(out), "--resume", "--no-progress"]) == 0
    rows = pq.read_table(out / "ledger").to_pylist()
    assert len(rows) == 4 and len({r["trial_id"] for r in rows}) == 4


def test_a_bug_is_one_line_with_exit_1_and_a_request_to_report(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TAML_DEBUG", raising=False)
    monkeypatch.setattr(cli, "_spaces", lambda args: {}["boom"])
    assert main(["spaces"]) == 1
    line = _one_line(capsys)
    assert "internal error (KeyError" in line and "please report it" in line and "TAML_DEBUG=1" in line
    monkeypatch.setenv("TAML_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["spaces"])


def test_task_names_mlflow_refuses_are_logged_under_safe_keys(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    rows = [{"depth": d, "act": a, "acc(%)": d + (a == "relu"), "acc[%]": -d} for d in (1, 2, 3) for a in ("relu", "tanh")]
    table = tmp_path / "weird.parquet"
    pq.write_table(pa.Table.from_pylist(rows), table)
    out = tmp_path / "s"
    assert main(["search", "--table", str(table), "--metric-columns", "acc(%),acc[%]", "--trials", "4", "--method",
                 "rs", "--out", str(out), "--no-progress"]) == 0
    from transfer_automl.study import SearchDir

    client = MlflowClient(SearchDir(out).default_tracking_uri())
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    controller = next(r for r in runs if r.data.tags.get("taml.role") == "controller")
    rewards = sorted(k for k in controller.data.metrics if k.startswith("reward/acc___") and k.endswith("/reward"))
    # both tasks' metrics are there, under distinct keys, although both names sanitize to acc___
    assert len(rewards) == 2, sorted(controller.data.metrics)


def test_safe_keys_keep_good_names_and_never_merge_two():
    from transfer_automl.tracking.mlflow import _keys

    keys = _keys(["child/val_accuracy", "a b:c/d-e.f", "x(1)", "x[1]", "y" * 300])
    assert keys["child/val_accuracy"] == "child/val_accuracy" and keys["a b:c/d-e.f"] == "a b:c/d-e.f"
    assert keys["x(1)"] != keys["x[1]"] and keys["x(1)"].startswith("x_1__")
    assert _keys(["reward/acc(%)/reward"])["reward/acc(%)/reward"].endswith("/reward")
    assert len(keys["y" * 300]) == 250

"""`taml search` with every method, transfer between searches, and tabular children."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from transfer_automl.cli import main
from transfer_automl.errors import ConfigError
from transfer_automl.search import load_checkpoint
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchSettings
from transfer_automl.tracking import MemoryTracker

pytestmark = pytest.mark.e2e

BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"


@pytest.mark.parametrize("method", ["reinforce", "ppo", "pqt", "transformer", "rs", "re", "tpe"])
def test_every_method_runs_and_resumes_on_a_table(tmp_path, toy_table, method):
    settings = dict(tasks=(), trials=6, out=str(tmp_path / "run"), method=method, table=str(toy_table),
                    metric_columns=("t1", "t2"), batch_size=2, progress=False, search_id="m")
    run_search(SearchSettings(**settings), tracker=MemoryTracker())
    resumed = run_search(SearchSettings(**{**settings, "trials": 10, "init_from": "resume"}), tracker=MemoryTracker())
    assert resumed.trials_run == 4
    rows = ds.dataset(tmp_path / "run" / "ledger").to_table().to_pylist()
    assert len(rows) == 10 and len({r["trial_id"] for r in rows}) == 10
    for r in rows:
        config = json.loads(r["config"])
        expected = config["depth"] + (config["act"] == "relu") if r["task"] == "t1" else -config["depth"] + 0.5 * (config["act"] == "tanh")
        assert r["val_accuracy"] == pytest.approx(expected)  # the table's value, looked up
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint["name"] == method and checkpoint["step"] == 5


def test_resume_with_another_method_is_refused(tmp_path, toy_table):
    settings = dict(tasks=(), trials=2, out=str(tmp_path / "run"), table=str(toy_table), metric_columns=("t1", "t2"),
                    progress=False)
    run_search(SearchSettings(**settings, method="rs"), tracker=MemoryTracker())
    with pytest.raises(ConfigError, match="method"):
        run_search(SearchSettings(**settings, method="tpe", init_from="resume"), tracker=MemoryTracker())


def test_transfer_search_starts_from_the_pretrained_controller(tmp_path, toy_table):
    base = dict(trials=40, table=str(toy_table), metric_columns=("t1", "t2"), method="pqt", progress=False)
    run_search(SearchSettings(tasks=("t1",), out=str(tmp_path / "pre"), **base), tracker=MemoryTracker())
    pre = load_checkpoint(tmp_path / "pre" / "checkpoint.pt")
    result = run_search(SearchSettings(tasks=("t2",), out=str(tmp_path / "new"), init_from="transfer",
                                       source=str(tmp_path / "pre"), **{**base, "trials": 1}), tracker=MemoryTracker())
    assert result.trials_run == 1
    new = load_checkpoint(tmp_path / "new" / "checkpoint.pt")
    assert new["tasks"] == ["t2"] and new["mixing"]["gamma"] == 0.1 and new["mixing"]["seen"] == 1
    # The controller started from the pretrained weights: one small PQT step away from them.
    name = "heads.0.weight"
    assert (new["controller_state"][name] - pre["controller_state"][name]).abs().max() < 0.05
    with pytest.raises(ConfigError, match="transfer with --method pqt"):
        run_search(SearchSettings(tasks=("t2",), out=str(tmp_path / "x"), init_from="transfer",
                                  source=str(tmp_path / "pre"), **{**base, "method": "reinforce"}), tracker=MemoryTracker())


def test_nasbench201_search_from_the_command_line(tmp_path, capsys):
    if not (BENCHMARKS / "nasbench201").is_dir():
        pytest.skip("NAS-Bench-201 table not found")
    code = main(["search", "--benchmark", "nasbench201", "--method", "re", "--trials", "30", "--out", str(tmp_path / "nb"),
                 "--data-dir", str(BENCHMARKS), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "median cell (test)" in out and "cifar100" in out
    rows = ds.dataset(tmp_path / "nb" / "ledger").to_table().to_pylist()
    assert len(rows) == 30 and {r["task"] for r in rows} <= {"cifar10", "cifar100", "imagenet"}


def test_table_errors_are_one_line(tmp_path, capsys, toy_table):
    assert main(["search", "--table", str(toy_table), "--trials", "2", "--out", str(tmp_path / "r")]) == 2
    assert "--metric-columns" in capsys.readouterr().err
    assert main(["search", "--table", str(toy_table), "--metric-columns", "t1,nope", "--trials", "2",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope" in err and len(err.splitlines()) == 1
    assert main(["search", "--tasks", "t1", "--table", str(toy_table), "--metric-columns", "t1", "--trials", "2",
                 "--method", "magic", "--out", str(tmp_path / "r")]) == 2
    assert "unknown 'magic'" in capsys.readouterr().err

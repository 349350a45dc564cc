"""An unreachable MLflow server loses no trial: the search completes on the ledger with one warning,
`taml runs sync` replays the runs into MLflow, and a second sync logs none. A child that trains
too long is stopped and recorded as `timeout`."""

from __future__ import annotations

import json
import socket

import pyarrow.dataset as ds
import pytest

from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
from transfer_automl.cli import main
from transfer_automl.errors import ConfigError
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchSettings
from transfer_automl.tasks import load_task
from transfer_automl.tasks.features import FeatureCache
from transfer_automl.tracking import MemoryTracker

pytestmark = pytest.mark.e2e


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string="tags.`taml.role` = 'child'", max_results=1000)


def test_unreachable_mlflow_loses_no_trial_and_sync_replays_them(tmp_path, toy_table, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "2"),
                        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0"), ("TAML_TRACKING_ATTEMPTS", "2"),
                        ("TAML_TRACKING_BACKOFF_S", "0.01")):
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    result = run_search(SearchSettings(tasks=(), trials=6, out=str(out), method="reinforce", table=str(toy_table),
                                       metric_columns=("t1", "t2"), batch_size=2, progress=False, search_id="outage"))
    rows = ds.dataset(out / "ledger").to_table().to_pylist()
    assert result.trials_run == 6 and len({r["trial_id"] for r in rows}) == 6
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1, warnings  # one line for the whole outage, not one per call
    assert "taml runs sync" in warnings[0] and "127.0.0.1" in warnings[0]

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["runs", "sync", str(out), "--tracking-uri", uri]) == 0
    assert "synced 6 new runs, 0 already present" in capsys.readouterr().out
    runs = _child_runs(uri)
    assert sorted(r.data.tags["taml.trial_id"] for r in runs) == sorted(r["trial_id"] for r in rows)
    assert all(r.data.tags["taml.search_id"] == "outage" and r.info.status == "FINISHED" for r in runs)
    assert main(["runs", "sync", str(out), "--tracking-uri", uri]) == 0
    assert "synced 0 new runs, 6 already present" in capsys.readouterr().out
    assert len(_child_runs(uri)) == 6


def test_sync_of_a_search_logged_live_adds_nothing(tmp_path, toy_table, capsys):
    out = tmp_path / "run"
    run_search(SearchSettings(tasks=(), trials=3, out=str(out), method="rs", table=str(toy_table),
                              metric_columns=("t1", "t2"), progress=False, search_id="live"))
    assert main(["runs", "sync", str(out)]) == 0  # default: the store the search recorded (tracking.json)
    assert "synced 0 new runs, 3 already present" in capsys.readouterr().out
    assert main(["runs", "sync", str(tmp_path / "nothing")]) == 2
    assert "holds no search" in capsys.readouterr().err


# A wide-tower child (no embedding module to download) with a long training budget.
LONG = dict(input_module="glove-6b-50d", fine_tune=False, hidden_layers=1, hidden_size=64, activation="relu",
            normalization="none", dropout=0.0, deep_lr=0.1, deep_reg="disable_deep_tower", wide_lr=0.1,
            wide_reg=0.0001, training_samples=1_000_000)


def test_a_child_past_its_time_limit_is_stopped_as_timeout(samples_dir, feature_cache_dir):
    task = load_task("sms_spam", samples_dir)
    cache = FeatureCache(feature_cache_dir)
    result = TextChildTrainer(ChildTrainerConfig(budget_scale=1.0, timeout_s=0.2), cache).train(LONG, task, seed=0)
    assert result.status == "timeout", result.error
    assert result.train_steps < 10_000 and "trial timeout" in result.error
    assert result.val_accuracy == 0.0 and result.duration_s < 5
    short = TextChildTrainer(ChildTrainerConfig(budget_scale=0.001, timeout_s=60), cache).train(LONG, task, seed=0)
    assert short.status == "ok", short.error
    with pytest.raises(ConfigError, match="timeout_s"):
        ChildTrainerConfig(timeout_s=0)


def test_a_search_records_timed_out_trials_with_reward_zero(tmp_path, samples_dir, feature_cache_dir):
    space = tmp_path / "long.json"
    space.write_text(json.dumps({"name": "long", "decisions": [{"name": k, "choices": [v]} for k, v in LONG.items()]}),
                     encoding="utf-8")
    settings = SearchSettings(tasks=("sms_spam",), trials=2, out=str(tmp_path / "run"), space=str(space),
                              method="rs", data_dir=str(samples_dir), cache_dir=str(feature_cache_dir),
                              budget_scale=1.0, trial_timeout=0.2, progress=False)
    run_search(settings, tracker=MemoryTracker())
    rows = ds.dataset(tmp_path / "run" / "ledger").to_table().to_pylist()
    assert [(r["status"], r["reward"]) for r in rows] == [("timeout", 0.0), ("timeout", 0.0)]
    with pytest.raises(ConfigError, match="trial_timeout"):
        run_search(SearchSettings(**{**settings.__dict__, "trial_timeout": -1.0}), tracker=MemoryTracker())

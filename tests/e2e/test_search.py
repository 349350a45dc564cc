"""The multitask search end to end: real tasks, real children, a real MLflow (sqlite) store."""

from __future__ import annotations

import json
import shutil

import pyarrow.dataset as ds
import pytest
import torch
import yaml

from transfer_automl.errors import ConfigError
from transfer_automl.search import LEDGER_SCHEMA, load_checkpoint
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchDir, SearchSettings
from transfer_automl.tracking import MemoryTracker

pytestmark = pytest.mark.e2e

# The 12 T-AML decisions with the cheap word tables only, to keep the suite fast on 2 cores.
SMALL_SPACE = {
    "name": "taml-small",
    "decisions": [
        {"name": "input_module", "choices": ["glove-6b-50d", "random-hashed-64"]},
        {"name": "fine_tune", "choices": [False, True]},
        {"name": "hidden_layers", "choices": [1, 2]},
        {"name": "hidden_size", "choices": [32, 64]},
        {"name": "activation", "choices": ["relu", "swish"]},
        {"name": "normalization", "choices": ["none", "layer"]},
        {"name": "dropout", "choices": [0.0, 0.1]},
        {"name": "deep_lr", "choices": [0.03, 0.1]},
        {"name": "deep_reg", "choices": [0.0, 0.0001]},
        {"name": "wide_lr", "choices": [0.03, 0.1]},
        {"name": "wide_reg", "choices": [0.0001, "disable_wide_tower"]},
        {"name": "training_samples", "choices": [10000, 30000]},
    ],
}


@pytest.fixture()
def space_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SMALL_SPACE))
    return str(path)


def _settings(tmp_path, space_file, samples_dir, feature_cache_dir, **overrides):
    values = dict(tasks=("sms_spam", "mpqa", "customer_reviews"), trials=8, out=str(tmp_path / "run"),
                  space=space_file, batch_size=2, data_dir=str(samples_dir), cache_dir=str(feature_cache_dir),
                  search_id="e2e", progress=False, controller_lr=0.01)
    values.update(overrides)
    return SearchSettings(**values)


def _mlflow_runs(out, role):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=SearchDir(out).default_tracking_uri())
    experiment = client.get_experiment_by_name("taml/e2e")
    return client, client.search_runs([experiment.experiment_id], filter_string=f"tags.`taml.role` = '{role}'",
                                      max_results=1000)


def test_ledger_and_mlflow_hold_exactly_the_trials_run(tmp_path, space_file, samples_dir, feature_cache_dir):
    result = run_search(_settings(tmp_path, space_file, samples_dir, feature_cache_dir))
    out = tmp_path / "run"
    table = ds.dataset(out / "ledger").to_table()
    assert table.schema.equals(LEDGER_SCHEMA, check_metadata=False)
    assert table.num_rows == 8 == result.trials_run
    assert len(set(table.column("trial_id").to_pylist())) == 8
    assert len(list((out / "ledger").glob("round-*.parquet"))) == 4  # one file per controller step
    rows = table.to_pylist()
    assert sorted({r["controller_step"] for r in rows}) == [0, 1, 2, 3]
    for r in rows:
        assert r["status"] == "ok" and 0 < r["val_accuracy"] <= 1 and r["reward"] == r["val_accuracy"]
        assert set(json.loads(r["config"])) == {d["name"] for d in SMALL_SPACE["decisions"]}
        assert r["ended_at"] >= r["started_at"]

    client, children = _mlflow_runs(out, "child")
    assert sorted(run.data.tags["taml.trial_id"] for run in children) == sorted(r["trial_id"] for r in rows)
    _, controllers = _mlflow_runs(out, "controller")
    assert len(controllers) == 1
    controller = controllers[0]
    assert all(run.data.tags["mlflow.parentRunId"] == controller.info.run_id for run in children)
    by_id = {r["trial_id"]: r for r in rows}
    for run in children:
        ledger_row = by_id[run.data.tags["taml.trial_id"]]
        assert run.data.params["input_module"] == json.loads(ledger_row["config"])["input_module"]
        assert run.data.metrics["child/val_accuracy"] == pytest.approx(ledger_row["val_accuracy"])
    history = client.get_metric_history(controller.info.run_id, "controller/loss")
    assert [m.step for m in history] == [0, 1, 2, 3]
    assert "reward/sms_spam/baseline" in controller.data.metrics
    logged_rewards = [m for task in ("sms_spam", "mpqa", "customer_reviews")
                      for m in client.get_metric_history(controller.info.run_id, f"reward/{task}/reward")]
    assert sorted(m.value for m in logged_rewards) == pytest.approx(sorted(
        sum(r["reward"] for r in rows if r["task"] == t and r["controller_step"] == s)
        / len([r for r in rows if r["task"] == t and r["controller_step"] == s])
        for t, s in {(r["task"], r["controller_step"]) for r in rows}))
    artifacts = {a.path for a in client.list_artifacts(controller.info.run_id)}
    assert artifacts == {"checkpoint.pt", "space.yaml", "settings.json", "refit.json"}  # refit.json: the champion refit's
    assert controller.data.params["budget_scale"] == "0.05"

    # Per-task summary agrees with the ledger.
    for summary in result.per_task:
        mine = [r for r in rows if r["task"] == summary.task]
        assert summary.trials == len(mine)
        if mine:
            assert summary.best_val_accuracy == max(r["val_accuracy"] for r in mine)


def test_resume_continues_without_losing_or_doubling_trials(tmp_path, space_file, samples_dir, feature_cache_dir):
    # Reference: 6 trials in one go.
    reference = tmp_path / "reference"
    with pytest.MonkeyPatch.context() as mp:  # the same search id as the search below: a store of its own
        mp.setenv("TAML_HOME", str(tmp_path / "reference-store"))
        run_search(_settings(tmp_path, space_file, samples_dir, feature_cache_dir, out=str(reference), trials=6,
                             batch_size=1))

    out = tmp_path / "run"
    run_search(_settings(tmp_path, space_file, samples_dir, feature_cache_dir, trials=4, batch_size=1))
    early_checkpoint = tmp_path / "after-4.pt"
    shutil.copy(out / "checkpoint.pt", early_checkpoint)
    with pytest.raises(ConfigError, match="already holds a search"):
        run_search(_settings(tmp_path, space_file, samples_dir, feature_cache_dir, trials=6, batch_size=1))
    resumed = run_search(_settings(tmp_path, space_file, samples_dir, feature_cache_dir, trials=6, batch_size=1, init_from="resume"))
    assert resumed.trials_run == 2

    # A crash after the ledger commit but before the checkpoint write: the ledger is ahead.
    shutil.copy(early_checkpoint, out / "checkpoint.pt")
    replayed = run_search(_settings(tmp_path, space_file, samples_dir, feature_cache_dir, trials=6, batch_size=1, init_from="resume"))
    assert replayed.trials_run == 0  # rounds 4 and 5 come from the ledger, not retrained

    ids = ds.dataset(out / "ledger").to_table().column("trial_id").to_pylist()
    ref_ids = ds.dataset(reference / "ledger").to_table().column("trial_id").to_pylist()
    assert sorted(ids) == sorted(ref_ids) and len(ids) == 6
    final = load_checkpoint(out / "checkpoint.pt")
    expected = load_checkpoint(reference / "checkpoint.pt")
    assert final["step"] == expected["step"] == 6
    for name, tensor in expected["controller_state"].items():
        assert torch.allclose(final["controller_state"][name], tensor), name
    _, children = _mlflow_runs(out, "child")
    assert len(children) == 6


def test_memory_tracker_sees_every_trial_and_step(tmp_path, space_file, samples_dir, feature_cache_dir):
    tracker = MemoryTracker()
    run_search(_settings(tmp_path, space_file, samples_dir, feature_cache_dir, trials=5, batch_size=2,
                         reward_power=3.0, normalization="baseline"), tracker=tracker)
    assert len(tracker.trials) == 5
    for trial in tracker.trials:  # MNMS: reward is the cubed validation accuracy
        assert trial["reward"] == pytest.approx(trial["val_accuracy"] ** 3)
    assert [p.rsplit("/", 1)[-1] for p in tracker.artifacts] == ["checkpoint.pt", "space.yaml", "settings.json"]
    assert [step for step, _ in tracker.controller] == [0, 1, 2, 2]  # 2 + 2 + 1 trials, then the summary
    assert tracker.status == "FINISHED"
    assert tracker.params["tasks"] == "sms_spam,mpqa,customer_reviews"


def test_resume_refuses_changed_settings_and_keeps_the_checkpoint(tmp_path, space_file, samples_dir, feature_cache_dir):
    run_search(_settings(tmp_path, space_file, samples_dir, feature_cache_dir, trials=2))
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    with pytest.raises(ConfigError, match=r"budget_scale is 0\.5 but .* ran with 0\.05"):
        run_search(_settings(tmp_path, space_file, samples_dir, feature_cache_dir, trials=4, init_from="resume",
                             budget_scale=0.5))
    assert checkpoint.read_bytes() == before
    assert ds.dataset(tmp_path / "run" / "ledger").to_table().num_rows == 2

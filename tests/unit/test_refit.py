"""Champion refit (study/refit.py): the top configurations per task retrained at the full budget with
early stopping on validation, the champion chosen by refit validation accuracy and never by test
accuracy, refit.json's shape (a contract benchmarks read), and the flags refused by name."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from transfer_automl.children.base import ChildResult
from transfer_automl.children.early_stopping import EarlyStopping, fit_with_early_stopping
from transfer_automl.cli import main
from transfer_automl.errors import ConfigError
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchSettings
from transfer_automl.study.refit import (
    RefitCandidate,
    choose_champion,
    ranked_rows,
    refit_champions,
)
from transfer_automl.tracking.memory import MemoryTracker

CANDIDATE_KEYS = {"trial_id", "search_val_accuracy", "search_test_accuracy", "refit_val_accuracy",
                  "refit_test_accuracy", "steps", "max_steps", "cost_s"}
# Four cheap configurations (hashed module, tiny towers): 20 steps each at the full budget.
DECISIONS = [("input_module", ["random-hashed-64"]), ("fine_tune", [False]), ("hidden_layers", [1]),
             ("hidden_size", [8, 16]), ("activation", ["relu"]), ("normalization", ["none"]), ("dropout", [0.0]),
             ("deep_lr", [0.03, 0.1]), ("deep_reg", [0.0]), ("wide_lr", [0.1]), ("wide_reg", [0.0]),
             ("training_samples", [2000])]


@pytest.fixture()
def space(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"name": "refit", "decisions": [{"name": n, "choices": c} for n, c in DECISIONS]}))
    return path


def _search(tmp_path, space, samples_dir, feature_cache_dir, name="s", **extra):
    """A finished 8-trial search over two sample tasks, not registered (a memory tracker)."""
    settings = SearchSettings(tasks=("mpqa", "sms_spam"), trials=8, batch_size=4, method="rs", out=str(tmp_path / name),
                              space=str(space), data_dir=str(samples_dir), cache_dir=str(feature_cache_dir),
                              search_id=name, progress=False, **extra)
    run_search(settings, tracker=MemoryTracker())
    return tmp_path / name


def _ledger(out):
    return [r for f in sorted((out / "ledger").glob("round-*.parquet")) for r in pq.read_table(f).to_pylist()]


# -- selection ---------------------------------------------------------------------------------------------


def _candidate(trial, val, test):
    return RefitCandidate({"trial_id": trial, "val_accuracy": 0.5, "test_accuracy": 0.5}, 0, val, test, ok=True)


def test_the_champion_is_the_best_refit_validation_accuracy_whatever_the_test_accuracy():
    candidates = [_candidate("a", 0.80, 0.95), _candidate("b", 0.85, 0.60), _candidate("c", 0.85, 0.99)]
    assert choose_champion(candidates).row["trial_id"] == "b"  # c ties on validation and comes later
    failed = RefitCandidate({"trial_id": "d"}, 0, 0.0, 0.0, ok=False)
    assert choose_champion([failed, _candidate("a", 0.1, 0.1)]).row["trial_id"] == "a"
    assert choose_champion([failed]) is None


def test_ranking_is_by_validation_at_the_highest_rung_first_of_equals():
    rows = [{"trial_id": "t/0/0", "task": "x", "status": "ok", "val_accuracy": 0.7, "parent_trial_id": None},
            {"trial_id": "t/0/1", "task": "x", "status": "ok", "val_accuracy": 0.9, "parent_trial_id": None},
            {"trial_id": "t/0/2", "task": "x", "status": "failed", "val_accuracy": 0.99, "parent_trial_id": None},
            {"trial_id": "t/1/0", "task": "x", "status": "ok", "val_accuracy": 0.7, "parent_trial_id": None},
            {"trial_id": "t/1/1", "task": "x", "status": "ok", "val_accuracy": 0.8, "parent_trial_id": "t/0/1"}]
    # t/0/1 was continued to t/1/1: the configuration counts once, at 0.8
    assert [r["trial_id"] for r in ranked_rows(rows, 3)["x"]] == ["t/1/1", "t/0/0", "t/1/0"]
    assert [r["trial_id"] for r in ranked_rows(rows, 1)["x"]] == ["t/1/1"]


class _ScriptedTrainer:
    """Refit results chosen per configuration: the best by test is not the best by validation."""

    config = SimpleNamespace(wide_buckets=16)

    def __init__(self, scores):
        self.scores, self.calls = scores, []

    def train(self, config, task, seed=0, keep_model=False, early_stopping=None, **_):
        self.calls.append((config["hidden_size"], config["deep_lr"], seed, early_stopping))
        val, test = self.scores[(config["hidden_size"], config["deep_lr"])]
        return ChildResult("ok", val, test, 7, 0.01, model=torch.nn.Linear(1, 1), max_steps=20, best_step=5)


def test_refit_champions_picks_by_refit_validation_when_test_would_pick_another(
        tmp_path, space, samples_dir, feature_cache_dir, monkeypatch):
    import transfer_automl.study.refit as refit

    out = _search(tmp_path, space, samples_dir, feature_cache_dir)
    scores = {(8, 0.03): (0.60, 0.99), (8, 0.1): (0.90, 0.50), (16, 0.03): (0.70, 0.98), (16, 0.1): (0.80, 0.97)}
    trainer = _ScriptedTrainer(scores)
    real_backend = refit.search_backend

    def scripted(*args):
        backend = real_backend(*args)
        assert args[-1] == 1.0  # the full budget: budget scale 1
        backend.trainer = trainer
        return backend

    monkeypatch.setattr(refit, "search_backend", scripted)
    report = refit_champions(out, "topk", 4)
    assert report == json.loads((out / "refit.json").read_text())
    assert all(call[3] is not None for call in trainer.calls)  # every candidate early-stops on validation
    rows = _ledger(out)
    for task, entry in report["tasks"].items():
        ranked = ranked_rows(rows, 4)[task]
        assert [c["trial_id"] for c in entry["candidates"]] == [r["trial_id"] for r in ranked]
        by_val = max(entry["candidates"], key=lambda c: c["refit_val_accuracy"])  # max keeps the first of equals
        by_test = max(entry["candidates"], key=lambda c: c["refit_test_accuracy"])
        assert entry["champion_trial_id"] == by_val["trial_id"]
        assert entry["champion_val_accuracy"] == by_val["refit_val_accuracy"]
        assert entry["champion_test_accuracy"] == by_val["refit_test_accuracy"]
        if len({(c["refit_val_accuracy"], c["refit_test_accuracy"]) for c in entry["candidates"]}) > 1:
            assert by_test["trial_id"] != by_val["trial_id"]  # the case where test would have chosen another


# -- the real refit ----------------------------------------------------------------------------------------


def test_topk_refits_k_candidates_per_task_at_the_full_budget_and_registers_the_best(
        tmp_path, space, samples_dir, feature_cache_dir, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    out = _search(tmp_path, space, samples_dir, feature_cache_dir)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["runs", "register", str(out), "--data-dir", str(samples_dir), "--refit", "topk", "--refit-k", "2",
                 "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    report = json.loads((out / "refit.json").read_text())
    assert set(report) == {"search_id", "mode", "k", "total_cost_s", "tasks"}
    assert (report["search_id"], report["mode"], report["k"]) == ("s", "topk", 2)
    rows = _ledger(out)
    assert sorted(report["tasks"]) == ["mpqa", "sms_spam"]
    total = 0.0
    for task, entry in report["tasks"].items():
        assert set(entry) == {"champion_trial_id", "champion_val_accuracy", "champion_test_accuracy", "candidates"}
        assert [c["trial_id"] for c in entry["candidates"]] == [r["trial_id"] for r in ranked_rows(rows, 2)[task]]
        assert len(entry["candidates"]) == 2
        for c in entry["candidates"]:
            assert set(c) == CANDIDATE_KEYS
            assert c["max_steps"] == 20  # 2,000 samples / 100 per batch at budget scale 1 (the search ran 1)
            assert 1 <= c["steps"] <= c["max_steps"] and c["cost_s"] > 0
            # evaluated every ceil(20 / 20) = 1 step: a stop before the end is 5 evaluations after the best
            total += c["cost_s"]
        best = max(entry["candidates"], key=lambda c: c["refit_val_accuracy"])
        assert entry["champion_trial_id"] == best["trial_id"]
    assert report["total_cost_s"] == pytest.approx(total)
    client = MlflowClient(uri, uri)
    for registered in document["registered"]:
        entry = report["tasks"][registered["task"]]
        version = client.get_model_version(registered["name"], registered["version"])
        assert version.tags["taml.trial_id"] == entry["champion_trial_id"]
        assert version.tags["taml.model_source"] == "refit" and version.tags["taml.refit.mode"] == "topk"
        assert float(version.tags["taml.val_accuracy"]) == entry["champion_val_accuracy"]
        assert int(version.tags["taml.refit.steps"]) <= int(version.tags["taml.refit.max_steps"]) == 20
    controller = client.search_runs([client.get_experiment_by_name("taml/s").experiment_id],
                                    filter_string="tags.`taml.role` = 'controller'")
    (run,) = controller  # registering synced the memory-tracked search into this store first
    assert run.data.metrics["refit/total_cost_s"] == pytest.approx(report["total_cost_s"])
    champion_rank = [c["trial_id"] for c in report["tasks"]["mpqa"]["candidates"]].index(
        report["tasks"]["mpqa"]["champion_trial_id"]) + 1
    assert run.data.metrics["refit/mpqa/champion_rank"] == champion_rank
    assert run.data.metrics["refit/mpqa/1/max_steps"] == 20


def test_refit_none_registers_the_ledger_child_as_before(tmp_path, space, samples_dir, feature_cache_dir):
    from mlflow.tracking import MlflowClient

    out = _search(tmp_path, space, samples_dir, feature_cache_dir, refit="none", budget_scale=0.5)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from transfer_automl.study.champions import register_champions

    report = register_champions(out, uri, refit="none")
    refit = json.loads((out / "refit.json").read_text())
    assert refit["mode"] == "none"
    rows = _ledger(out)
    client = MlflowClient(uri, uri)
    for registered in report.registered:
        (best,) = ranked_rows(rows, 1)[registered.candidate.task]
        entry = refit["tasks"][registered.candidate.task]
        (only,) = entry["candidates"]
        assert only["trial_id"] == entry["champion_trial_id"] == best["trial_id"]
        assert (only["refit_val_accuracy"], only["refit_test_accuracy"]) == (best["val_accuracy"], best["test_accuracy"])
        assert only["steps"] == only["max_steps"] == 10  # the search's own budget (scale 0.5), no refit
        version = client.get_model_version(registered.name, registered.version)
        assert version.tags["taml.model_source"] == "ledger"
        assert not any(k.startswith("taml.refit.") for k in version.tags)
        assert float(version.tags["taml.val_accuracy"]) == best["val_accuracy"]


def test_early_stopping_stops_after_the_patience_and_keeps_the_best_weights(monkeypatch):
    import numpy as np

    import transfer_automl.children.early_stopping as es

    scripted = iter([0.5, 0.7, 0.6, 0.7, 0.65, 0.9])  # best 0.7 after the 2nd evaluation; 3 without better
    snapshots = []

    def fake_accuracy(model, make_batch, rows, labels, batch_size):
        snapshots.append(model.weight.detach().clone())
        return next(scripted)

    monkeypatch.setattr(es, "accuracy", fake_accuracy)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    features = torch.randn(40, 2)
    labels = torch.randint(0, 2, (40,))
    splits = {"train": np.arange(30), "validation": np.arange(30, 40)}

    def make_batch(rows):
        return features[torch.from_numpy(rows)]

    rule = EarlyStopping(evaluations=10, patience=3)
    status, steps, _, best = fit_with_early_stopping(model, optimizer, make_batch, labels, splits, 40, 10,
                                                     np.random.default_rng(0), rule, 64)
    assert status == "ok" and rule.every(40) == 4
    assert len(snapshots) == 5 and steps == 20  # stopped at the 5th evaluation, before 0.9 was ever seen
    assert (best.val_accuracy, best.step) == (0.7, 8)
    assert torch.equal(model.weight, snapshots[1])  # the weights of the best evaluation, restored
    with pytest.raises(ConfigError, match="patience"):
        EarlyStopping(patience=0)


# -- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, named", [(["--refit", "all"], "--refit"), (["--refit-k", "0"], "--refit-k"),
                                          (["--refit-k", "two"], "--refit-k")])
def test_bad_refit_flags_are_one_line_exit_2_and_write_nothing(tmp_path, flags, named, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as stopped:  # argparse's exit, as for every flag
        main(["search", "--tasks", "mpqa", "--trials", "1", "--out", str(out), *flags])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and not out.exists()


def test_bad_refit_values_change_nothing_in_a_finished_search(tmp_path, space, samples_dir, feature_cache_dir, capsys):
    out = _search(tmp_path, space, samples_dir, feature_cache_dir)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as stopped:
        main(["runs", "register", str(out), "--refit-k", "101"])
    assert stopped.value.code == 2
    assert "--refit-k" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="refit"):
        refit_champions(out, "everything")
    from transfer_automl.steps.retraining_steps import register_champion

    with pytest.raises(ConfigError, match="refit_k"):
        register_champion(str(out), refit="topk", refit_k=0)
    with pytest.raises(ConfigError, match="settings.refit"):
        SearchSettings.from_mapping({"tasks": ["mpqa"], "out": "x", "trials": 1, "refit": "all"})
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (out / "refit.json").exists()


def test_packed_refit_is_the_refit_one_at_a_time(tmp_path, space, samples_dir, feature_cache_dir):
    """On a GPU the refit packs its candidates (children/packing.py); each packed child evaluates,
    keeps its best weights and stops as it would alone (no dropout here: up to float rounding)."""
    from transfer_automl.children.packing import PackedTextTrainer
    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.tasks import load_task
    from transfer_automl.tasks.features import FeatureCache

    trainer = TextChildTrainer(ChildTrainerConfig(budget_scale=1.0), FeatureCache(feature_cache_dir))
    tasks = [load_task(name, samples_dir) for name in ("mpqa", "sms_spam")]
    base = {n: c[0] for n, c in DECISIONS}
    items = [({**base, "hidden_size": h, "deep_lr": lr}, task, seed)
             for task in tasks for h in (8, 16) for lr, seed in ((0.03, 1), (1.0, 2))]
    rule = EarlyStopping(evaluations=10, patience=2)
    packer = PackedTextTrainer(trainer, max_pack=8, keep_models=True)
    packed = packer.train_many(items, early_stopping=rule)
    assert sorted(packer.last_pack_sizes) == [4, 4]  # one pack per width, both tasks in it
    alone = [trainer.train(config, task, seed, keep_model=True, early_stopping=rule) for config, task, seed in items]
    assert any(a.train_steps < a.max_steps for a in alone)  # some stop early
    for p, a in zip(packed, alone, strict=True):
        assert (p.status, p.train_steps, p.max_steps, p.best_step) == (a.status, a.train_steps, a.max_steps, a.best_step)
        assert p.val_accuracy == pytest.approx(a.val_accuracy, abs=0.02)
        assert p.test_accuracy == pytest.approx(a.test_accuracy, abs=0.02)


def test_a_search_with_pack_refits_its_candidates_packed(tmp_path, space, samples_dir, feature_cache_dir, monkeypatch):
    from transfer_automl.children.packing import PackedTextTrainer

    calls = []
    original = PackedTextTrainer.train_many

    def spy(self, items, early_stopping=None):
        calls.append((len(items), early_stopping))
        return original(self, items, early_stopping=early_stopping)

    packed_out = _search(tmp_path, space, samples_dir, feature_cache_dir, name="packed", pack=4)
    plain_out = _search(tmp_path, space, samples_dir, feature_cache_dir, name="plain")
    monkeypatch.setattr(PackedTextTrainer, "train_many", spy)
    packed = refit_champions(packed_out, "topk", 2)
    assert calls and calls[-1][0] == 4 and calls[-1][1] is not None  # 2 tasks x 2 candidates, one call
    plain = refit_champions(plain_out, "topk", 2)
    assert len(calls) == 1  # pack 1 on CPU: one at a time
    for task, entry in packed["tasks"].items():
        other = plain["tasks"][task]
        assert [c["trial_id"].split("/", 1)[1] for c in entry["candidates"]] == \
            [c["trial_id"].split("/", 1)[1] for c in other["candidates"]]
        assert [c["steps"] for c in entry["candidates"]] == [c["steps"] for c in other["candidates"]]
        assert entry["champion_val_accuracy"] == pytest.approx(other["champion_val_accuracy"], abs=0.02)


# -- the ensemble champion ---------------------------------------------------------------------------------


class _FixedProbabilities:
    """A trainer whose members predict fixed class probabilities (per member, per split)."""

    def __init__(self, table):
        self.table = table

    def probabilities(self, model, task, split):
        return np.asarray(self.table[model.name][split], dtype=np.float32)


def test_the_ensemble_is_every_member_that_trained_scored_by_their_mean_probabilities():
    from transfer_automl.study.refit import ensemble_of

    task = SimpleNamespace(labels=np.array([0, 1, 1, 0]), splits={"validation": np.array([0, 1]),
                                                                  "test": np.array([2, 3])})
    # a alone: validation 1/2, test 0/2; c alone: validation 1/2, test 2/2; the mean: validation 2/2, test 1/2
    table = {"a": {"validation": [[0.9, 0.1], [0.6, 0.4]], "test": [[0.9, 0.1], [0.2, 0.8]]},
             "c": {"validation": [[0.4, 0.6], [0.1, 0.9]], "test": [[0.05, 0.95], [0.7, 0.3]]}}
    members = [_candidate("a", 0.5, 0.0), RefitCandidate({"trial_id": "b"}, 0, ok=False), _candidate("c", 0.5, 1.0)]
    members[0].model, members[2].model = _Named("a"), _Named("c")
    ensemble = ensemble_of(_FixedProbabilities(table), task, members)
    assert [m.row["trial_id"] for m in ensemble.members] == ["a", "c"]  # the failed one is left out
    assert (ensemble.val_accuracy, ensemble.test_accuracy) == (1.0, 0.5)
    assert ensemble_of(_FixedProbabilities(table), task, members[:2]) is None  # one model is its own champion


class _Named(torch.nn.Module):
    def __init__(self, name):
        super().__init__()
        self.name = name


def test_ensemble_refit_registers_one_model_that_serves_the_refits_test_accuracy(
        tmp_path, space, samples_dir, feature_cache_dir, monkeypatch, capsys):
    import mlflow
    from mlflow.tracking import MlflowClient

    from transfer_automl.tasks import load_task
    from transfer_automl.tracking.mlflow import _fluent_tracking_uri

    out = _search(tmp_path, space, samples_dir, feature_cache_dir)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["runs", "register", str(out), "--data-dir", str(samples_dir), "--refit", "ensemble", "--refit-k",
                 "3", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    report = json.loads((out / "refit.json").read_text())
    assert (report["mode"], report["k"]) == ("ensemble", 3)
    client = MlflowClient(uri, uri)
    for registered in document["registered"]:
        entry = report["tasks"][registered["task"]]
        trained = [c["trial_id"] for c in entry["candidates"] if c["refit_val_accuracy"] > 0]
        assert entry["ensemble_trial_ids"] == trained and len(trained) == 3
        assert entry["champion_trial_id"] == trained[0]
        version = client.get_model_version(registered["name"], registered["version"])
        assert version.tags["taml.model_source"] == "ensemble"
        assert version.tags["taml.refit.ensemble_trial_ids"] == ",".join(trained)
        assert float(version.tags["taml.test_accuracy"]) == entry["champion_test_accuracy"]
        # the served model is the refit's ensemble: its test accuracy, text for text
        task = load_task(registered["task"], str(samples_dir))
        with _fluent_tracking_uri(uri):  # an earlier test may have set the global URI, which load_model reads
            model = mlflow.pyfunc.load_model(f"models:/{registered['name']}/{registered['version']}")
            local = Path(mlflow.artifacts.download_artifacts(f"models:/{registered['name']}/{registered['version']}"))
        rows = task.splits["test"]
        predicted = model.predict(pd.DataFrame({"text": [task.texts[i] for i in rows]}))["label"]
        served = float(np.mean(predicted.to_numpy() == np.asarray(task.classes, dtype=object)[task.labels[rows]]))
        assert served == pytest.approx(entry["champion_test_accuracy"])
        # three frozen children of one module carry its table once
        (bundle,) = {p.parent for p in local.rglob("ensemble.json")}
        assert sorted(p.parent.name for p in bundle.rglob("table.safetensors")) == ["member-1"]
        assert json.loads((bundle / "member-3" / "meta.json").read_text())["input"]["files_from"] == "../member-1"

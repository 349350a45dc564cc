"""Each task's best child as a registered MLflow model (sqlite store): retrained from its ledger row,
logged into its trial's run, loaded back as a raw-text pyfunc model, alias `champion` only on a better model,
tabular searches skipped, and Kubeflow's MLflow variables still nesting everything under the pipeline run."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from transfer_automl.cli import main
from transfer_automl.errors import TamlError
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchDir, SearchSettings, trial_seed
from transfer_automl.study.champions import register_champions
from transfer_automl.tracking.champion import CHAMPION_ALIAS, ChampionCandidate

# MLflow stores, HTTP servers, whole searches: part of `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

TASKS = ("mpqa", "sms_spam")
# Cheap word-table children (no sentence encoder), both towers and fine-tuning in play.
SPACE = {"name": "champion-small", "decisions": [
    {"name": "input_module", "choices": ["glove-6b-50d", "random-hashed-64"]},
    {"name": "fine_tune", "choices": [False, True]},
    {"name": "hidden_layers", "choices": [1, 2]},
    {"name": "hidden_size", "choices": [32]},
    {"name": "activation", "choices": ["relu", "swish"]},
    {"name": "normalization", "choices": ["none", "layer"]},
    {"name": "dropout", "choices": [0.0, 0.1]},
    {"name": "deep_lr", "choices": [0.03, 0.1]},
    {"name": "deep_reg", "choices": [0.0001]},
    {"name": "wide_lr", "choices": [0.1]},
    {"name": "wide_reg", "choices": [0.0001, "disable_wide_tower"]},
    {"name": "training_samples", "choices": [10000]},
]}


@pytest.fixture(scope="module")
def searches(tmp_path_factory, samples_dir, feature_cache_dir):
    """Two real text searches (seeds 0 and 1) on the same tasks, tracked in one sqlite store."""
    root = tmp_path_factory.mktemp("champion")
    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    results = {}
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
            mp.delenv(var, raising=False)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for name, seed in (("a", 0), ("b", 1)):
            results[name] = run_search(SearchSettings(
                tasks=TASKS, trials=4, batch_size=2, seed=seed, out=str(root / name), space=str(space),
                data_dir=str(samples_dir), cache_dir=str(feature_cache_dir), search_id=f"champ-{name}", progress=False,
                refit="none"))  # the ledger's own children (test_refit.py: the full-budget refit)
    return {"uri": uri, "root": root, "space": space, **results}


@pytest.fixture(scope="module")
def tiny_served(tmp_path_factory, samples_dir):
    """A wide-tower-only child of the sample mpqa task as a ServingModel: small and quick to log."""
    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.serving.export import serving_model
    from transfer_automl.tasks import load_task
    from transfer_automl.tasks.features import FeatureCache

    root = tmp_path_factory.mktemp("tiny")
    config = {d["name"]: d["choices"][0] for d in SPACE["decisions"]} | {"deep_reg": "disable_deep_tower"}
    task = load_task("mpqa", samples_dir)
    trainer = TextChildTrainer(ChildTrainerConfig(), FeatureCache(root / "cache"))
    result = trainer.train(config, task, keep_model=True)
    return serving_model(result.model.eval(), task, trainer.config.wide_buckets, root / "bundle")


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _best_rows(out):
    rows = [r for f in sorted((out / "ledger").glob("round-*.parquet")) for r in pq.read_table(f).to_pylist()]
    best = {}
    for r in rows:
        if r["status"] == "ok" and (r["task"] not in best or r["val_accuracy"] > best[r["task"]]["val_accuracy"]):
            best[r["task"]] = r
    return best


def test_each_search_registers_its_best_child_per_task_linked_to_its_ledger_row(searches):
    client = _client(searches["uri"])
    for name in ("a", "b"):
        out = searches["root"] / name
        report = searches[name].champions
        assert report.skipped == "" and report.search_id == f"champ-{name}"
        best = _best_rows(out)
        assert sorted(r.candidate.task for r in report.registered) == sorted(best)
        for registered in report.registered:
            row = best[registered.candidate.task]
            version = client.get_model_version(registered.name, registered.version)
            assert registered.name == f"taml-{row['task']}"
            assert version.tags["taml.trial_id"] == row["trial_id"] and version.tags["taml.search_id"] == f"champ-{name}"
            assert float(version.tags["taml.val_accuracy"]) == row["val_accuracy"]
            assert float(version.tags["taml.test_accuracy"]) == row["test_accuracy"]
            assert json.loads(version.tags["taml.config"]) == json.loads(row["config"])
            assert row["trial_id"] in version.description and f"{row['val_accuracy']:.4f}" in version.description
            # The version's run is the trial's child run, and its ledger file holds the trial's row.
            run = client.get_run(version.run_id)
            assert run.data.tags["taml.role"] == "child" and run.data.tags["taml.trial_id"] == row["trial_id"]
            assert run.data.tags["taml.ledger_file"] == version.tags["taml.ledger_file"]
            assert run.data.tags["taml.registered_model"] == f"{registered.name}/{registered.version}"
            ledger_ids = pq.read_table(out / "ledger" / version.tags["taml.ledger_file"]).column("trial_id").to_pylist()
            assert row["trial_id"] in ledger_ids


def test_champion_alias_is_on_the_best_version_first_of_equals(searches):
    client = _client(searches["uri"])
    for task in TASKS:
        versions = sorted(client.search_model_versions(f"name = 'taml-{task}'"), key=lambda v: int(v.version))
        assert [v.tags["taml.search_id"] for v in versions] == ["champ-a", "champ-b"]
        best_val = max(float(v.tags["taml.val_accuracy"]) for v in versions)
        expected = next(v.version for v in versions if float(v.tags["taml.val_accuracy"]) == best_val)
        assert str(client.get_model_version_by_alias(f"taml-{task}", CHAMPION_ALIAS).version) == str(expected)
        b = next(r for r in searches["b"].champions.registered if r.candidate.task == task)
        a = next(r for r in searches["a"].champions.registered if r.candidate.task == task)
        assert b.champion == (b.candidate.val_accuracy > a.candidate.val_accuracy)


def test_alias_moves_only_for_a_strictly_better_model(searches, tiny_served):
    """The rule itself, with chosen accuracies: better moves the alias, equal or worse does not,
    and offering a trial again reuses its version."""
    from transfer_automl.tracking.mlflow import MlflowModelRegistry, MlflowTracker

    uri, task = searches["uri"], "alias-rule"
    tracker = MlflowTracker(uri)
    tracker.start("alias-rule", {}, {})
    registry = MlflowModelRegistry(uri)
    outcomes = []
    for k, val in enumerate((0.8, 0.7, 0.8, 0.9)):
        trial_id = f"alias-rule/000000/{k:03d}"
        tracker.log_trial({"trial_id": trial_id, "search_id": "alias-rule", "task": task, "controller_step": 0,
                           "status": "ok", "val_accuracy": val, "test_accuracy": val, "reward": val,
                           "duration_s": 1.0, "ledger_file": "round-000000.parquet"}, {"k": k})
        candidate = ChampionCandidate(task, "alias-rule", trial_id, "round-000000.parquet", val, val - 0.05, {"k": k})
        run_id = registry.trial_run_id("alias-rule", trial_id)
        outcomes.append(registry.register(candidate, tiny_served, run_id))
    assert [(o.version, o.champion, o.previous_champion) for o in outcomes] == [
        ("1", True, None), ("2", False, "1"), ("3", False, "1"), ("4", True, "1")]
    again = registry.register(outcomes[1].candidate, tiny_served, outcomes[1].run_id)
    assert (again.version, again.new_version, again.champion) == ("2", False, False)
    client = _client(uri)
    assert len(client.search_model_versions("name = 'taml-alias-rule'")) == 4
    assert str(client.get_model_version_by_alias("taml-alias-rule", CHAMPION_ALIAS).version) == "4"


def test_logged_model_reads_raw_text_and_predicts_like_the_trained_child(searches, samples_dir, feature_cache_dir):
    import mlflow.artifacts
    import mlflow.pyfunc
    import pandas as pd

    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.tasks import load_task
    from transfer_automl.tasks.features import FeatureCache

    client = _client(searches["uri"])
    trainer = TextChildTrainer(ChildTrainerConfig(), FeatureCache(feature_cache_dir))
    for registered in searches["a"].champions.registered:
        row = _best_rows(searches["root"] / "a")[registered.candidate.task]
        step, index = row["controller_step"], int(row["trial_id"].rsplit("/", 1)[-1])
        task = load_task(row["task"], samples_dir)
        original = trainer.train(json.loads(row["config"]), task, seed=trial_seed(0, step, index), keep_model=True)
        assert original.val_accuracy == row["val_accuracy"]  # children are deterministic given their seed
        with _uri(searches["uri"]):
            loaded = mlflow.pyfunc.load_model(registered.model_uri)
            requirements = mlflow.artifacts.download_artifacts(
                f"{client.get_model_version_download_uri(registered.name, registered.version)}/requirements.txt")
        rows = task.splits["validation"]
        predicted = loaded.predict(pd.DataFrame({"text": [task.texts[i] for i in rows]}))
        accuracy = float((predicted["label"].map(task.classes.index).to_numpy() == task.labels[rows]).mean())
        assert accuracy == row["val_accuracy"]  # from raw text, the ledger's validation accuracy
        assert list(predicted.columns) == ["label"] + [f"prob_{c}" for c in task.classes]
        pins = open(requirements).read().split()
        assert "torch==2.13.0" in pins and any(p.startswith("safetensors==") for p in pins)
        assert not any(p.startswith(("transfer-automl", "kfp", "boto3")) for p in pins)


def test_registering_again_adds_no_version(searches, samples_dir, capsys):
    client = _client(searches["uri"])
    before = {t: len(client.search_model_versions(f"name = 'taml-{t}'")) for t in TASKS}
    out = searches["root"] / "a"
    assert main(["runs", "register", str(out), "--tracking-uri", searches["uri"], "--data-dir", str(samples_dir)]) == 0
    printed = capsys.readouterr().out
    assert "search champ-a" in printed and all(f"taml-{t} version" in printed for t in TASKS)
    assert main(["runs", "register", str(out), "--tracking-uri", searches["uri"], "--data-dir", str(samples_dir),
                 "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["search_id"] == "champ-a" and document["skipped"] == ""
    assert sorted(r["task"] for r in document["registered"]) == sorted(TASKS)
    assert not any(r["new_version"] for r in document["registered"])
    assert {t: len(client.search_model_versions(f"name = 'taml-{t}'")) for t in TASKS} == before


def test_retraining_that_does_not_reproduce_the_ledger_registers_nothing(searches, samples_dir, tmp_path):
    client = _client(searches["uri"])
    before = len(client.search_model_versions("name = 'taml-mpqa'"))
    table = pq.read_table(samples_dir / "mpqa.parquet")
    pq.write_table(table.slice(0, table.num_rows - 200), tmp_path / "mpqa.parquet")  # other data, same name
    with pytest.raises(TamlError, match="the ledger says"):
        register_champions(searches["root"] / "a", searches["uri"], data_dir=str(tmp_path), tasks=("mpqa",),
                           cache_dir=str(tmp_path / "cache"), refit="none")
    assert len(client.search_model_versions("name = 'taml-mpqa'")) == before


def test_a_table_search_has_no_model_to_log(tmp_path, toy_table, capsys):
    out = tmp_path / "run"
    result = run_search(SearchSettings(tasks=(), trials=3, out=str(out), method="rs", table=str(toy_table),
                                       metric_columns=("t1", "t2"), progress=False, search_id="table"))
    assert result.champions.registered == [] and "no model to log" in result.champions.skipped
    assert main(["runs", "register", str(out)]) == 0
    assert "none registered" in capsys.readouterr().out
    assert _client(SearchDir(out).default_tracking_uri()).search_registered_models() == []


def test_kubeflow_mlflow_variables_nest_the_search_and_its_champion_under_the_pipeline_run(
        searches, samples_dir, feature_cache_dir, monkeypatch):
    """KFP's MLflow integration sets MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID and MLFLOW_RUN_ID: the
    controller run nests under the pipeline run in that experiment, the children under it, and the
    champion is found and logged there; no `taml/<id>` experiment appears."""
    uri = searches["uri"]
    client = _client(uri)
    experiment_id = client.create_experiment("kfp-pipeline")
    pipeline_run = client.create_run(experiment_id, run_name="pipeline-run").info.run_id
    for name, value in (("MLFLOW_TRACKING_URI", uri), ("MLFLOW_EXPERIMENT_ID", experiment_id),
                        ("MLFLOW_RUN_ID", pipeline_run)):
        monkeypatch.setenv(name, value)
    result = run_search(SearchSettings(
        tasks=("mpqa",), trials=2, out=str(searches["root"] / "kfp"), space=str(searches["space"]),
        data_dir=str(samples_dir), cache_dir=str(feature_cache_dir), search_id="champ-kfp", progress=False))
    assert client.get_experiment_by_name("taml/champ-kfp") is None
    runs = client.search_runs([experiment_id], filter_string="tags.`taml.search_id` = 'champ-kfp'")
    controller = [r for r in runs if r.data.tags["taml.role"] == "controller"]
    children = [r for r in runs if r.data.tags["taml.role"] == "child"]
    assert len(controller) == 1 and len(children) == 2
    assert controller[0].data.tags["mlflow.parentRunId"] == pipeline_run
    assert all(r.data.tags["mlflow.parentRunId"] == controller[0].info.run_id for r in children)
    (registered,) = result.champions.registered
    assert registered.run_id in {r.info.run_id for r in children}
    assert client.get_run(registered.run_id).info.experiment_id == experiment_id
    assert client.get_run(pipeline_run).info.status == "RUNNING"  # the pipeline's run is the pipeline's to end


class _uri:
    """mlflow.pyfunc.load_model and download_artifacts read the global tracking URI."""

    def __init__(self, uri):
        self.uri = uri

    def __enter__(self):
        import mlflow

        self.previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)

    def __exit__(self, *exc):
        import mlflow

        mlflow.set_tracking_uri(self.previous)


def test_a_search_whose_tracker_is_down_leaves_registering_for_later(tmp_path):
    from transfer_automl.study.champions import register_after_search

    class Down:
        location, down = "http://127.0.0.1:9", True

    settings = SearchSettings(tasks=("mpqa",), trials=1, out=str(tmp_path))
    report = register_after_search(settings, str(tmp_path), Down())
    assert report.registered == [] and f"taml runs register {tmp_path}" in report.skipped
    assert report.lines() == [f"models: none registered: {report.skipped}"]


def test_registering_a_directory_without_a_search_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["runs", "register", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("taml: error: ") and "checkpoint.pt" in err[0]
    assert not (tmp_path / "nothing").exists()  # nothing written, not even an MLflow store


def test_registering_into_a_store_without_the_runs_replays_the_ledger_first(searches, samples_dir, tmp_path):
    """After an outage (or into another server) the trial runs are missing: they are synced from
    the ledger, then the models logged into them."""
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    report = register_champions(searches["root"] / "a", uri, data_dir=str(samples_dir), tasks=TASKS, refit="none")
    client = _client(uri)
    experiment = client.get_experiment_by_name("taml/champ-a")
    children = client.search_runs([experiment.experiment_id], filter_string="tags.`taml.role` = 'child'")
    assert len(children) == 4  # every ledger row, not only the champions'
    for registered in report.registered:
        assert registered.new_version and registered.champion and registered.version == "1"
        assert client.get_model_version(registered.name, "1").run_id in {r.info.run_id for r in children}


def test_a_model_that_fails_to_log_leaves_its_trial_run_finished_and_registers_nothing(searches, tiny_served, tmp_path):
    import dataclasses

    from transfer_automl.tracking.mlflow import MlflowModelRegistry, MlflowTracker

    uri = searches["uri"]
    tracker = MlflowTracker(uri)
    tracker.start("unloggable", {}, {})
    tracker.log_trial({"trial_id": "unloggable/000000/000", "search_id": "unloggable", "task": "unloggable",
                       "controller_step": 0, "status": "ok", "val_accuracy": 0.9, "test_accuracy": 0.9, "reward": 0.9,
                       "duration_s": 1.0, "ledger_file": "round-000000.parquet"}, {})
    registry = MlflowModelRegistry(uri)
    run_id = registry.trial_run_id("unloggable", "unloggable/000000/000")
    model = dataclasses.replace(tiny_served, bundle=str(tmp_path / "gone"))  # no bundle to upload
    candidate = ChampionCandidate("unloggable", "unloggable", "unloggable/000000/000", "round-000000.parquet", 0.9, 0.9)
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="gone"):
        registry.register(candidate, model, run_id)
    client = _client(uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert client.search_model_versions("name = 'taml-unloggable'") == []

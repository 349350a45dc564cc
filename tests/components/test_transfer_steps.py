"""The transfer and retraining steps, called directly (the components are thin shells over them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401  (fixtures)
from transfer_automl.errors import CheckpointError, ConfigError
from transfer_automl.search import Ledger, load_checkpoint
from transfer_automl.space import get_space, load_space
from transfer_automl.steps import pipeline_steps as steps
from transfer_automl.steps import retraining_steps, transfer_steps
from transfer_automl.study import SearchDir, stored_settings


@pytest.fixture(scope="module")
def three_task_table(tmp_path_factory):
    """t3 ranks the configurations as t1 does and opposite to t2: t1 is t3's closest source."""
    rows = [{"depth": d, "act": a, "t1": d + (a == "relu"), "t2": -d - (a == "relu"), "t3": 2 * (d + (a == "relu")) + 0.1}
            for d in (1, 2, 3, 4) for a in ("relu", "tanh")]
    path = tmp_path_factory.mktemp("table") / "three.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return {"table": str(path), "metric_columns": ["t1", "t2", "t3"]}


@pytest.fixture()
def work_dir(tmp_path, monkeypatch):
    """The local working directory of S3 searches (their default MLflow store), inside tmp_path."""
    monkeypatch.setenv("TAML_WORK_DIR", str(tmp_path / "work"))
    return tmp_path / "work"


def _search(path, table, tasks, rounds=1, children=16, search_id="source", planned=None):
    """A table search through the steps: `planned` rounds (default `rounds`), `rounds` of them run."""
    steps.init_search(path, {"tasks": tasks, "search_id": search_id, **table}, children, planned or rounds)
    for k in range(rounds):
        trials = steps.controller_step(path, k, children)
        steps.aggregate_rewards(path, k, [steps.train_child(path, t) for t in trials])
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory, three_task_table):
    """One round of 16 children on t1 and t2; read by the tests, never changed."""
    return _search(tmp_path_factory.mktemp("searches") / "source", three_task_table, ["t1", "t2"])


def test_rank_correlation_ranks_the_correlated_task_first(tmp_path, source, three_task_table):
    chosen = transfer_steps.task_distance(tmp_path / "t", ["t3"], source, distance="rank_correlation", select="all",
                                          **three_task_table)
    assert chosen == {"t3": ["t1", "t2"]}
    rows = {(r["source"], r["target"]): r for r in pq.read_table(tmp_path / "t" / "distance.parquet").to_pylist()}
    assert set(rows) == {("t1", "t3"), ("t2", "t3")}
    assert rows[("t1", "t3")]["mean"] == pytest.approx(0.0)  # same ranking on every probed configuration
    assert rows[("t2", "t3")]["mean"] == pytest.approx(2.0)  # reversed ranking
    assert all(r["distance"] == "rank_correlation" and r["std"] == 0 for r in rows.values())
    assert transfer_steps.task_distance(tmp_path / "u", ["t3"], source, distance="rank_correlation", select="t2",
                                        **three_task_table) == {"t3": ["t2"]}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target_tasks": ["t1"]}, "already tasks of the source search"),
    ({"distance": "cosine"}, "distance must be one of"),
    ({"distance": "fisher_ld"}, "fisher_ld needs the tasks' data"),
    ({"select": "t9"}, "select must be closest, all or a task"),
    ({"target_tasks": []}, "at least one target task"),
])
def test_task_distance_refuses_bad_input_and_writes_nothing(tmp_path, source, three_task_table, kwargs, message):
    args = {"target_tasks": ["t3"], "distance": "rank_correlation", **kwargs}
    with pytest.raises(ConfigError, match=message):
        transfer_steps.task_distance(tmp_path / "t", source_search=source, **args, **three_task_table)
    assert not (tmp_path / "t").exists()


def test_rank_correlation_needs_enough_probe_configurations(tmp_path, three_task_table):
    small = _search(tmp_path / "small", three_task_table, ["t1", "t2"], children=2)
    with pytest.raises(ConfigError, match="distinct successful configurations"):
        transfer_steps.task_distance(tmp_path / "t", ["t3"], small, distance="rank_correlation", **three_task_table)


def test_warm_start_takes_the_closest_sources_embedding_and_is_idempotent(tmp_path, source, three_task_table):
    target = tmp_path / "target"
    settings = {"search_id": "target", **three_task_table}
    step = transfer_steps.transfer_init(target, ["t3"], source, {"t3": ["t1", "t2"]}, settings, children_per_round=2)
    assert step == 0
    body = load_checkpoint(target / "checkpoint.pt")
    old = load_checkpoint(source / "checkpoint.pt")["controller_state"]["task_embeddings.weight"]
    assert body["tasks"] == ["t3"] and body["search_id"] == "target"
    assert torch.equal(body["controller_state"]["task_embeddings.weight"][0], old[0])  # t1's row
    assert json.loads((target / "transfer.json").read_text())["sources"] == {"t3": ["t1", "t2"]}
    again = transfer_steps.transfer_init(target, ["t3"], source, {"t3": ["t1", "t2"]}, settings,
                                         children_per_round=2)  # a retried task
    assert again == 0 and torch.equal(load_checkpoint(target / "checkpoint.pt")["controller_state"][
        "task_embeddings.weight"], body["controller_state"]["task_embeddings.weight"])
    with pytest.raises(ConfigError, match="already holds a search"):
        transfer_steps.transfer_init(target, ["t3"], source, {"t3": ["t1"]}, settings, children_per_round=4)
    mean = transfer_steps.transfer_init(tmp_path / "mean", ["t3"], source, {"t3": ["t1", "t2"]},
                                        {"embedding": "mean", **three_task_table})
    assert mean == 0 and torch.allclose(load_checkpoint(tmp_path / "mean" / "checkpoint.pt")["controller_state"][
        "task_embeddings.weight"][0], old[:2].mean(dim=0))


def test_transfer_init_refuses_what_cannot_work(tmp_path, source, three_task_table):
    for sources, settings, kwargs, error, message in [
        ({"t3": ["t9"]}, {}, {}, ConfigError, "not tasks of the source search"),
        ({}, {}, {}, ConfigError, "no source task chosen"),
        ({"t3": ["t1"]}, {}, {"mode": "reduce_space"}, ConfigError, "cannot be reduced"),
        ({"t3": ["t1"]}, {"method": "ppo"}, {}, ConfigError, "continues the source's 'reinforce'"),
        ({"t3": ["t1"]}, {}, {"mode": "copy"}, ConfigError, "mode must be one of"),
        ({"t3": ["t1"]}, {"mixing_gamma": float("nan")}, {}, ConfigError, "settings.mixing_gamma"),
        ({"t3": ["t1"]}, {"mixing_gama": 0.2}, {}, ConfigError, "mixing_gama"),
        ({"t3": ["t1"]}, {"trials": 4}, {}, ConfigError, "set by the pipeline"),
    ]:
        with pytest.raises(error, match=message):
            transfer_steps.transfer_init(tmp_path / "t", ["t3"], source, sources, {**settings, **three_task_table},
                                         **kwargs)
        assert not (tmp_path / "t").exists()
    rs = tmp_path / "rs"
    steps.init_search(rs, {"tasks": ["t1", "t2"], "method": "rs", **three_task_table}, 2, 1)
    with pytest.raises(CheckpointError, match="no controller to warm-start"):
        transfer_steps.transfer_init(tmp_path / "t", ["t3"], rs, {"t3": ["t1"]}, three_task_table)


def test_reduce_space_searches_only_the_sources_top_choices(tmp_path, samples_dir):
    space = get_space("mnms-text")
    source = tmp_path / "source"
    steps.init_search(source, {"tasks": ["sms_spam", "mpqa"], "space": "mnms-text", "search_id": "text",
                               "data_dir": str(samples_dir)}, 2, 1)
    configs = [{d.name: d.choices[i % len(d.choices)] for d in space.decisions} for i in (0, 1)]
    now = datetime.now(UTC)
    Ledger(source / "ledger").append_round(0, [
        {"trial_id": f"t{i}", "search_id": "text", "task": task, "controller_step": 0, "config": json.dumps(c),
         "reward": acc, "val_accuracy": acc, "test_accuracy": acc, "status": "ok", "error": "",
         "started_at": now, "ended_at": now + timedelta(seconds=1), "duration_s": 1.0}
        for i, (task, c, acc) in enumerate([("sms_spam", configs[0], 0.9), ("mpqa", configs[1], 0.8)])])
    target = tmp_path / "target"
    step = transfer_steps.transfer_init(target, ["customer_reviews"], source, {"customer_reviews": ["sms_spam"]},
                                        {"method": "rs"}, mode="reduce_space", children_per_round=2)
    assert step == 0
    reduced = load_space(target / "reduced-space.yaml")
    assert {d.name: list(d.choices) for d in reduced.decisions} == {k: [v] for k, v in configs[0].items()}
    settings = stored_settings(SearchDir.of(target))
    assert settings.method == "rs" and settings.space == str(target / "reduced-space.yaml")
    assert settings.tasks == ("customer_reviews",) and settings.init_from == "scratch"
    trials = steps.controller_step(target, 0, 2)
    assert all(json.loads(t["config"]) == configs[0] for t in trials)  # one configuration left


def test_newest_search_and_resume(tmp_path, three_task_table):
    root = tmp_path / "searches"
    old = _search(root / "a-old", three_task_table, ["t1", "t2"], children=2, search_id="old", planned=2)
    new = _search(root / "b-new", three_task_table, ["t1", "t2"], children=2, search_id="new")
    _search(root / "c-other", three_task_table, ["t3"], children=2, search_id="other")
    assert retraining_steps.newest_search(root, ["t2", "t1"]).location == str(new)
    steps.aggregate_rewards(old, 1, [steps.train_child(old, t) for t in steps.controller_step(old, 1, 2)])
    assert retraining_steps.newest_search(root, ["t1", "t2"]).location == str(old)  # it ran last
    assert retraining_steps.newest_search(root, ["t3"]).location == str(root / "c-other")
    assert retraining_steps.resume_search(root, ["t1", "t2"], 2, 3) == (str(old), 2)
    assert stored_settings(SearchDir.of(old)).trials == 10  # (2 + 3) rounds x 2 children
    assert retraining_steps.resume_search(root, ["t1", "t2"], 2, 3) == (str(old), 2)  # a retried step
    assert stored_settings(SearchDir.of(old)).trials == 10
    assert retraining_steps.resume_search(new, [], 2, 1) == (str(new), 1)  # a search directory itself
    trials = steps.controller_step(new, 1, 2)
    assert [t["trial_id"] for t in trials] == ["new/000001/000", "new/000001/001"]
    with pytest.raises(ConfigError, match="runs 2 children per round, not 4"):
        retraining_steps.resume_search(root, ["t1", "t2"], 4, 1)
    with pytest.raises(ConfigError, match="no pipeline search for tasks"):
        retraining_steps.newest_search(root, ["t1"])


def test_register_champion_finishes_the_search_and_says_why_a_table_has_no_model(tmp_path, three_task_table):
    from mlflow.tracking import MlflowClient

    source = _search(tmp_path / "source", three_task_table, ["t1", "t2"], children=2)
    out = retraining_steps.register_champion(source)
    assert out["tasks"] == {}
    assert "none registered" in out["markdown"] and "source" in out["markdown"]
    # It is Study.finish: the controller run closed with the search's files beside it.
    client = MlflowClient(SearchDir(source).default_tracking_uri())
    [controller] = client.search_runs([client.get_experiment_by_name("taml/source").experiment_id],
                                      filter_string="tags.`taml.role` = 'controller'")
    assert controller.info.status == "FINISHED" and "reward/t1/best_val_accuracy" in controller.data.metrics
    assert {a.path for a in client.list_artifacts(controller.info.run_id)} == {
        "checkpoint.pt", "settings.json", "space.yaml"}


def test_fisher_distance_from_the_tasks_data(tmp_path, samples_dir):
    source = tmp_path / "source"
    steps.init_search(source, {"tasks": ["sms_spam", "mpqa"], "space": "mnms-text", "search_id": "text",
                               "data_dir": str(samples_dir)}, 2, 1)
    chosen = transfer_steps.task_distance(tmp_path / "t", ["customer_reviews"], source, distance="fisher_ld",
                                          select="all", repeats=2)
    rows = {r["source"]: r for r in pq.read_table(tmp_path / "t" / "distance.parquet").to_pylist()}
    assert set(rows) == {"sms_spam", "mpqa"} and all(r["target"] == "customer_reviews" for r in rows.values())
    assert all(r["mean"] > 0 and r["std"] >= 0 and r["distance"] == "fisher_ld" for r in rows.values())
    assert chosen == {"customer_reviews": sorted(rows, key=lambda s: rows[s]["mean"])}


def test_transfer_and_retraining_steps_on_s3(s3_bucket, three_task_table, work_dir):
    """The same steps with every search on a real S3 endpoint (moto over HTTP)."""
    import boto3

    root = f"s3://{s3_bucket}/searches"
    _search(f"{root}/source", three_task_table, ["t1", "t2"])
    chosen = transfer_steps.task_distance(f"{root}/target", ["t3"], f"{root}/source", distance="rank_correlation",
                                          **three_task_table)
    assert chosen == {"t3": ["t1"]}
    assert transfer_steps.transfer_init(f"{root}/target", ["t3"], f"{root}/source", chosen,
                                        {"search_id": "target", **three_task_table}, children_per_round=2) == 0
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert {"searches/target/distance.parquet", "searches/target/transfer.json", "searches/target/settings.json",
            "searches/target/checkpoint.pt"} <= keys
    trials = steps.controller_step(f"{root}/target", 0, 2)
    steps.aggregate_rewards(f"{root}/target", 0, [steps.train_child(f"{root}/target", t) for t in trials])
    assert retraining_steps.resume_search(root, ["t3"], 2, 1) == (f"{root}/target", 1)
    # The S3 searches' MLflow stores live in the local working directory, never in the bucket.
    assert (work_dir / "s3" / s3_bucket / "searches" / "target" / "mlflow.db").is_file()
    assert not [k for k in keys if k.endswith("mlflow.db")]


def test_transfer_auto_learns_from_the_history_the_pipelines_write(tmp_path, three_task_table):
    """transfer_search with settings.transfer auto: no source search, no distances; the new search
    is a rank-ensemble over the history that multitask_search's finish step recorded into."""
    history = str(tmp_path / "history")
    earlier = tmp_path / "earlier"
    steps.init_search(earlier, {"tasks": ["t1", "t2"], "search_id": "earlier", "history": history,
                                **three_task_table}, 8, 1)
    trials = steps.controller_step(earlier, 0, 8)
    steps.aggregate_rewards(earlier, 0, [steps.train_child(earlier, t) for t in trials])
    steps.finish_search(earlier)  # the multitask pipeline's last step records the search
    settings = {"transfer": "auto", "history": history, "embedding": "closest", **three_task_table}
    assert transfer_steps.task_distance(tmp_path / "new", ["t3"], "", transfer="auto") == {"t3": []}
    assert transfer_steps.transfer_init(tmp_path / "new", ["t3"], "", {"t3": []}, settings,
                                        children_per_round=4, rounds=1) == 0
    stored = stored_settings(SearchDir.of(tmp_path / "new"))
    assert (stored.method, stored.transfer, stored.init_from) == ("rank-ensemble", "auto", "scratch")
    recorded = json.loads((tmp_path / "new" / "settings.json").read_text())["_history"]
    assert [u["search_id"] for u in recorded["entries"]] == ["earlier"]
    used = recorded["entries"][0]["tasks"]  # the earlier search's 8 trials, drawn over t1 and t2
    assert set(used) <= {"t1", "t2"} and sum(used.values()) == 8
    with pytest.raises(ConfigError, match="source_search: give the search to transfer from"):
        transfer_steps.task_distance(tmp_path / "other", ["t3"], "", distance="rank_correlation")

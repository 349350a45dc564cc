"""The pipeline steps, called directly: the same search as `run_search`, round by round.

The steps are adapters over the Study, so their tracker is the Study's own: MLflow in the
search's default store, the one shared under TAML_HOME (conftest: a directory per test) and
recorded in `<search_dir>/tracking.json`. The tests read that store.
"""

from __future__ import annotations

import json

import pytest

from same_state import assert_same_state  # tests/ is on the path, like s3_fixtures
from transfer_automl.errors import ConfigError
from transfer_automl.search import Ledger, load_checkpoint
from transfer_automl.steps import pipeline_steps as steps
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchDir, SearchSettings, Study, stored_settings
from transfer_automl.tracking import MemoryTracker

_VOLATILE = ("started_at", "ended_at", "duration_s", "expected_cost_s")  # times, and estimates made of them


def _settings(table, method="reinforce", seed=3, **extra) -> dict:
    """A pipeline's `settings` parameter: plain JSON, as kfp passes it."""
    return {"table": str(table), "metric_columns": ["t1", "t2"], "method": method, "seed": seed, "search_id": "s",
            **extra}


def _run_pipeline_steps(search_dir, table, method, rounds, children, seed=3):
    first = steps.init_search(search_dir, _settings(table, method, seed), children, rounds)
    assert first == 0
    outputs = []
    for k in range(rounds):
        trials = steps.controller_step(search_dir, k, children)
        results = [steps.train_child(search_dir, t) for t in reversed(trials)]  # any order
        outputs.append(steps.aggregate_rewards(search_dir, k, results))
    return outputs


def _ledger_rows(path):
    return [{k: v for k, v in r.items() if k not in _VOLATILE} for r in Ledger(path / "ledger").read().to_pylist()]


def _without_location(checkpoint: dict) -> dict:
    """The checkpoint records the settings, whose `out` is where the search lives."""
    return {**checkpoint, "search_settings": {k: v for k, v in checkpoint["search_settings"].items() if k != "out"}}


def _mlflow_runs(search_dir) -> dict[str, object]:
    """{run name: run} of the search's experiment in its own MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(SearchDir(search_dir).default_tracking_uri())
    [experiment] = [e for e in client.search_experiments() if e.name.startswith("taml/")]
    return {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


def _mlflow_view(search_dir) -> dict[str, tuple]:
    """What MLflow holds of a search, less what differs between two runs of it (times, `out`)."""
    view = {}
    for name, run in _mlflow_runs(search_dir).items():
        # Times differ between runs: a child's duration, and the estimate fitted from earlier ones.
        metrics = {k: v for k, v in run.data.metrics.items() if k not in ("child/duration_s", "child/expected_cost_s")}
        params = {k: v for k, v in run.data.params.items() if k != "out"}
        view[name] = (run.info.status, run.data.tags.get("taml.role"), metrics, params)
    return view


def _files(search_dir) -> set[str]:
    """The search's files, with MLflow's run ids left out of the artifacts' paths."""
    out = set()
    for p in search_dir.rglob("*"):
        if p.is_file() and p.name != "mlflow.db":
            parts = p.relative_to(search_dir).parts
            out.add(f"mlartifacts/{p.name}" if parts[0] == "mlartifacts" else "/".join(parts))
    return out


@pytest.mark.parametrize("method", ["reinforce", "pqt", "re", "tpe"])
def test_steps_reproduce_run_search(tmp_path, toy_table, method, monkeypatch):
    rounds, children = 3, 2
    # Both searches have the id "s": each gets a store of its own (TAML_HOME), in its directory.
    monkeypatch.setenv("TAML_HOME", str(tmp_path / "steps"))
    _run_pipeline_steps(tmp_path / "steps", toy_table, method, rounds, children)
    steps.finish_search(tmp_path / "steps")
    monkeypatch.setenv("TAML_HOME", str(tmp_path / "loop"))
    mlflow_too = method == "reinforce"  # MLflow on both sides once: the same Study code logs every method
    run_search(SearchSettings(tasks=(), trials=rounds * children, out=str(tmp_path / "loop"), method=method,
                              table=str(toy_table), metric_columns=("t1", "t2"), batch_size=children, seed=3,
                              search_id="s", progress=False), tracker=None if mlflow_too else MemoryTracker())
    steps_rows, loop_rows = _ledger_rows(tmp_path / "steps"), _ledger_rows(tmp_path / "loop")
    assert len(steps_rows) == rounds * children
    assert steps_rows == loop_rows
    a = load_checkpoint(tmp_path / "steps" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "loop" / "checkpoint.pt")
    assert a["step"] == rounds and a["search_settings"]["trials"] == rounds * children
    assert_same_state(_without_location(a), _without_location(b))
    # The same MLflow runs: one controller run, one child run per trial, the same values.
    view = _mlflow_view(tmp_path / "steps")
    assert len(view) == 1 + rounds * children
    assert view["controller-s"][:2] == ("FINISHED", "controller")
    assert {"mlartifacts/checkpoint.pt", "mlartifacts/settings.json", "mlartifacts/space.yaml"} <= _files(
        tmp_path / "steps")  # the search's files beside the controller run
    if mlflow_too:
        assert view == _mlflow_view(tmp_path / "loop")
    # ... and the same files, round files included (`taml search` writes them too).
    # (tracking.json: the MLflow store a search with the default tracker records; the loop of the
    # other methods runs with a MemoryTracker)
    assert "tracking.json" in _files(tmp_path / "steps")
    searched = {f for f in _files(tmp_path / "steps") if not f.startswith("mlartifacts/") and f != "tracking.json"}
    assert searched == {f for f in _files(tmp_path / "loop") if not f.startswith("mlartifacts/") and
                        f != "tracking.json"}
    assert {"settings.json", "space.yaml", "rounds/000002/trials.json", "rounds/000002/results/001.json"} <= searched


def test_every_step_is_idempotent(tmp_path, toy_table):
    search_dir = tmp_path / "s"
    # A retried init (the same settings, nothing told yet) reopens the search and writes nothing.
    assert steps.init_search(search_dir, _settings(toy_table), 2, 2) == 0
    init_files = {p.name: p.read_bytes() for p in (search_dir / "checkpoint.pt", search_dir / "settings.json")}
    assert steps.init_search(search_dir, _settings(toy_table), 2, 2) == 0
    assert {p: (search_dir / p).read_bytes() for p in init_files} == init_files
    outputs = []
    for k in range(2):
        trials = steps.controller_step(search_dir, k, 2)
        outputs.append(steps.aggregate_rewards(search_dir, k, [steps.train_child(search_dir, t) for t in trials]))
    checkpoint = (search_dir / "checkpoint.pt").read_bytes()
    ledger = _ledger_rows(search_dir)
    runs = {name: run.info.run_id for name, run in _mlflow_runs(search_dir).items()}
    assert len(runs) == 5  # the controller and 4 children
    # A retried or cached task runs again: nothing changes and nothing counts twice.
    trials = steps.controller_step(search_dir, 1, 2)
    assert trials == json.loads((search_dir / "rounds" / "000001" / "trials.json").read_text())
    results = [steps.train_child(search_dir, t) for t in trials]
    assert results == [json.loads((search_dir / "rounds" / "000001" / "results" / f"00{i}.json").read_text())
                       for i in range(2)]
    again = steps.aggregate_rewards(search_dir, 1, results)
    assert again == {"next_round": 2, "metrics": {}, "markdown": outputs[1]["markdown"]}  # told before: no metrics
    assert (search_dir / "checkpoint.pt").read_bytes() == checkpoint
    assert _ledger_rows(search_dir) == ledger
    # The end of the search, twice: the same answer, no new runs, the controller run closed.
    finished = steps.finish_search(search_dir)
    assert steps.finish_search(search_dir) == finished
    after = _mlflow_runs(search_dir)
    assert {name: run.info.run_id for name, run in after.items()} == runs
    assert after["controller-s"].info.status == "FINISHED"
    # Starting it again from scratch is not a retry: it is refused, pointing at resume.
    with pytest.raises(ConfigError, match="already holds a search.*init_from=resume"):
        steps.init_search(search_dir, _settings(toy_table), 2, 2)
    assert (search_dir / "checkpoint.pt").read_bytes() == checkpoint
    # The final summary belongs to the last round (step 1), so MLflow shows it as the latest value.
    from mlflow.tracking import MlflowClient

    client, run_id = MlflowClient(SearchDir(search_dir).default_tracking_uri()), runs["controller-s"]
    summary = [k for k in after["controller-s"].data.metrics if k.endswith("/best_val_accuracy")]
    assert summary
    for name in summary:
        latest = max(client.get_metric_history(run_id, name), key=lambda m: m.timestamp)
        assert latest.step == 1, (name, latest)


def test_aggregate_metrics_and_markdown(tmp_path, toy_table):
    search_dir = tmp_path / "s"
    steps.init_search(search_dir, _settings(toy_table, seed=2, top_n=2), 8, 1)
    trials = steps.controller_step(search_dir, 0, 8)
    out = steps.aggregate_rewards(search_dir, 0, [steps.train_child(search_dir, t) for t in trials])
    tasks = {t["task"] for t in trials}
    for task in tasks:
        assert f"reward/{task}/accuracy_top2" in out["metrics"]
        assert f"| {task} |" in out["markdown"] and "accuracy-top2" in out["markdown"]
    assert out["next_round"] == 1 and "controller/loss" in out["metrics"]
    # What the Study's own tracker logged: MLflow in the search's default store.
    runs = _mlflow_runs(search_dir)
    controller = runs.pop("controller-s")
    assert controller.data.tags["taml.search_id"] == "s" and controller.data.tags["taml.role"] == "controller"
    assert controller.data.params["method"] == "reinforce" and controller.data.params["batch_size"] == "8"
    for name, value in out["metrics"].items():  # the step's metrics are the round's in MLflow
        assert controller.data.metrics[name] == pytest.approx(value), name
    from mlflow.tracking import MlflowClient

    client = MlflowClient(SearchDir(search_dir).default_tracking_uri())
    history = client.get_metric_history(controller.info.run_id, "controller/loss")
    assert [m.step for m in history] == [0]
    # child runs are named by task and trial number (round 0 of 8 children: 1..8)
    assert sorted(runs) == sorted(f"{t['task']} #{int(t['trial_id'].rsplit('/', 1)[1]) + 1}" for t in trials)
    assert sorted(r.data.tags["taml.trial_id"] for r in runs.values()) == sorted(t["trial_id"] for t in trials)
    assert {r.data.tags["taml.role"] for r in runs.values()} == {"child"}
    assert all(r.data.tags["mlflow.parentRunId"] == controller.info.run_id for r in runs.values())
    # The round's per-task figures are those of the ledger, each trial counted once: what
    # finish_search reports. (A task with three distinct values among its trials: its top 2 would
    # change if a trial were counted twice.)
    rows = _ledger_rows(search_dir)
    assert max(len({r["val_accuracy"] for r in rows if r["task"] == t}) for t in tasks) >= 3
    for s in [s for s in Study.load(search_dir).summaries() if s.trained]:
        assert out["metrics"][f"reward/{s.task}/best_val_accuracy"] == s.best_val_accuracy
        assert out["metrics"][f"reward/{s.task}/accuracy_top2"] == pytest.approx(s.accuracy_top_n), s.task


def test_a_search_continues_where_it_stopped(tmp_path, toy_table):
    search_dir = tmp_path / "s"
    _run_pipeline_steps(search_dir, toy_table, "reinforce", 1, 2)
    # A changed fixed setting is refused by name, and nothing is written.
    before = {p: (search_dir / p).read_bytes() for p in ("checkpoint.pt", "settings.json")}
    with pytest.raises(ConfigError, match="seed is 4 but the search .* ran with 3"):
        steps.init_search(search_dir, {"init_from": "resume", "seed": 4}, 2, 1)
    with pytest.raises(ConfigError, match="batch_size is 3"):
        steps.init_search(search_dir, {"init_from": "resume"}, 3, 1)
    assert {p: (search_dir / p).read_bytes() for p in before} == before
    # init_from=resume continues with the stored settings, `rounds` rounds longer.
    start = steps.init_search(search_dir, {"init_from": "resume", "top_n": 5}, 2, 1)
    assert start == 1
    settings = stored_settings(SearchDir.of(search_dir))
    assert (settings.trials, settings.seed, settings.top_n, settings.table) == (4, 3, 5, str(toy_table))
    changes = json.loads((search_dir / "settings.json").read_text())["_changes"]
    assert [c["changed"] for c in changes] == [{"trials": {"from": 2, "to": 4}, "top_n": {"from": 10, "to": 5}}]
    trials = steps.controller_step(search_dir, start, 2)
    assert [t["trial_id"] for t in trials] == ["s/000001/000", "s/000001/001"]
    assert steps.aggregate_rewards(search_dir, 1, [steps.train_child(search_dir, t) for t in trials])["next_round"] == 2
    assert len(_ledger_rows(search_dir)) == 4
    with pytest.raises(ConfigError, match="all asked"):  # its trials are spent: resume again for more
        steps.controller_step(search_dir, 2, 2)


@pytest.mark.parametrize(("given", "field"), [
    ({"entropy_weight": float("nan")}, "settings.entropy_weight"),
    ({"controller_lr": float("inf")}, "settings.controller_lr"),
    ({"method_options": {"max_grad_norm": float("nan")}}, "settings.method_options.max_grad_norm"),
    ({"entropy_wieght": 0.1}, "entropy_wieght"),
    ({"seed": "one"}, "settings.seed"),
    ({"trials": 8}, "trials"),  # set by the pipeline's shape
    ({"out": "elsewhere"}, "out"),
])
def test_a_bad_settings_mapping_is_refused_naming_the_field_and_writes_nothing(tmp_path, toy_table, given, field):
    search_dir = tmp_path / "s"
    with pytest.raises(ConfigError) as refused:
        steps.init_search(search_dir, _settings(toy_table, **given), 2, 1)
    message = str(refused.value)
    assert field in message and "\n" not in message, message
    assert not search_dir.exists()


def test_rounds_out_of_order_and_foreign_results_are_refused(tmp_path, toy_table):
    search_dir = tmp_path / "s"
    steps.init_search(search_dir, _settings(toy_table, seed=0), 2, 1)
    with pytest.raises(ConfigError, match="step 0, not 1"):
        steps.controller_step(search_dir, 1, 2)
    with pytest.raises(ConfigError, match="children"):
        steps.controller_step(search_dir, 0, 3)
    trials = steps.controller_step(search_dir, 0, 2)
    first = steps.train_child(search_dir, trials[0])
    with pytest.raises(ConfigError, match="missing"):
        steps.aggregate_rewards(search_dir, 0, [first])
    with pytest.raises(ConfigError, match="foreign"):
        steps.aggregate_rewards(search_dir, 0, [first, {**first, "trial_id": "other/000000/001"}])
    assert not (search_dir / "ledger").exists() or not list((search_dir / "ledger").iterdir())


def test_packs_are_the_rounds_trials_and_train_as_the_children_would(tmp_path, toy_table):
    """round_packs splits a round's trials into packs in trial order (one per GPU pod); train_pack
    gives each child's row as train_child does; aggregate_rewards takes the packs' lists."""
    alone, packed = tmp_path / "alone", tmp_path / "packed"
    for d in (alone, packed):  # two search ids: one shared MLflow store holds both searches
        steps.init_search(d, _settings(toy_table, search_id=d.name), 5, 2)

    def same(value):  # packed's trials and rows, named as alone's
        return json.loads(json.dumps(value).replace('"packed/', '"alone/').replace('"packed"', '"alone"'))

    for k in range(2):
        trials = steps.controller_step(alone, k, 5)
        packs = steps.round_packs(packed, k, 5, 2)
        assert [p["pack_index"] for p in packs] == [0, 1] and {p["round_index"] for p in packs} == {k}
        assert [len(p["trials"]) for p in packs] == [3, 2]
        assert same([t for p in packs for t in p["trials"]]) == trials  # the same trials, in order
        assert steps.round_packs(packed, k, 5, 2) == packs  # asked again: the same packs
        assert [len(p["trials"]) for p in steps.round_packs(packed, k, 5, 9)] == [1] * 5  # at most one pack a child
        rows = [steps.train_pack(packed, p) for p in reversed(packs)]  # any order
        assert steps.train_pack(packed, packs[0]) == rows[1]  # retried: the rows written, nothing trained
        one = [steps.train_child(alone, t) for t in trials]
        volatile = ("started_at", "ended_at", "duration_s", "expected_cost_s")
        assert [{c: v for c, v in r.items() if c not in volatile} for r in same(rows[1] + rows[0])] == \
            [{c: v for c, v in r.items() if c not in volatile} for r in one]
        assert steps.aggregate_rewards(packed, k, rows)["next_round"] == k + 1
        steps.aggregate_rewards(alone, k, one)
    assert same(_ledger_rows(packed)) == _ledger_rows(alone)
    with pytest.raises(ConfigError, match="packs: must be >= 1"):
        steps.round_packs(packed, 2, 5, 0)
    with pytest.raises(ConfigError, match="pack: not a pack of trials"):
        steps.train_pack(packed, {"round_index": 0})

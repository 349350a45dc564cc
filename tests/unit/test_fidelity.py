"""Multi-fidelity search: rungs, promotion (ASHA and synchronous SHA), continued children, the
ledger's rung columns (old ledgers still load), MLflow rung steps, and the time budget."""

from __future__ import annotations

import pytest
import torch

from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
from transfer_automl.errors import ConfigError
from transfer_automl.tasks import load_task
from transfer_automl.tasks.features import FeatureCache

# A small, fast child with everything that carries state between rungs: dropout (torch's
# generator), layer norm, the wide tower (two Proximal Adagrad groups), batch order.
CHILD = dict(input_module="random-hashed-64", fine_tune=False, hidden_layers=2, hidden_size=32,
             activation="swish", normalization="layer", dropout=0.2, deep_lr=0.1, deep_reg=0.0001,
             wide_lr=0.1, wide_reg=0.0001, training_samples=30000)  # 300 steps x 0.1 = 30 steps


@pytest.fixture(scope="module")
def trainer(feature_cache_dir):
    return TextChildTrainer(ChildTrainerConfig(budget_scale=0.1, device="cpu"), FeatureCache(feature_cache_dir))


@pytest.fixture(scope="module")
def mpqa(samples_dir):
    return load_task("mpqa", samples_dir)


def _weights(result):
    return {k: v.clone() for k, v in result.model.state_dict().items()}


def test_a_resumed_child_is_the_child_trained_in_one_go(trainer, mpqa):
    """Rung 0 (budget 1/9 -> 4 of 30 steps), continued to 1/3 (10), then to 1 (30): the same
    weights and accuracies, bit for bit, as 30 steps at once. Restarting instead of continuing,
    or dropping the optimizer's accumulators, the batch order or the generators, breaks this."""
    whole = trainer.train(CHILD, mpqa, seed=7, keep_model=True)
    assert whole.status == "ok", whole.error
    assert whole.train_steps == 30
    low = trainer.train(CHILD, mpqa, seed=7, budget=1 / 9, keep_state=True)
    assert low.train_steps == 4 and low.state["steps"] == 4
    mid = trainer.train(CHILD, mpqa, seed=7, budget=1 / 3, resume=low.state, keep_state=True)
    assert mid.train_steps == 10
    top = trainer.train(CHILD, mpqa, seed=7, budget=1.0, resume=mid.state, keep_model=True)
    assert top.train_steps == 30
    assert (top.val_accuracy, top.test_accuracy) == (whole.val_accuracy, whole.test_accuracy)
    for name, value in _weights(whole).items():
        assert torch.equal(value, _weights(top)[name]), name
    # Started again from scratch at the same budget it would differ from the continued one only
    # by chance; from the rung-0 weights without their optimizer state it differs for sure.
    broken = dict(low.state, optimizer={"state": {}, "param_groups": low.state["optimizer"]["param_groups"]})
    other = trainer.train(CHILD, mpqa, seed=7, budget=1.0, resume=broken, keep_model=True)
    assert any(not torch.equal(v, _weights(other)[k]) for k, v in _weights(whole).items())


def test_a_budget_outside_0_1_or_a_state_past_it_is_refused(trainer, mpqa):
    with pytest.raises(ConfigError, match="budget must be a fraction in"):
        trainer.train(CHILD, mpqa, budget=1.5)
    with pytest.raises(ConfigError, match="budget must be a fraction in"):
        trainer.train(CHILD, mpqa, budget=0.0)
    state = trainer.train(CHILD, mpqa, seed=1, budget=0.5, keep_state=True).state
    with pytest.raises(ConfigError, match="trained 15 steps, more than the 6"):
        trainer.train(CHILD, mpqa, seed=1, budget=0.2, resume=state)


# -- rungs and promotion rules (pure) --------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402

from transfer_automl.search.fidelity import (  # noqa: E402
    Rungs,
    asha_promotions,
    highest_rungs,
    lineage_root,
    sha_promotions,
)


@dataclass
class R:
    trial_id: str
    task: str
    rung: int
    val_accuracy: float
    status: str = "ok"
    parent_trial_id: str | None = None

    @property
    def reward(self) -> float:  # without a cost target the reward ranks as the accuracy does
        return self.val_accuracy


def test_rungs_are_geometric_down_from_the_max_budget():
    assert Rungs(1 / 9, 1.0, 3).budgets == pytest.approx([1 / 9, 1 / 3, 1.0])
    assert Rungs(0.1, 1.0, 3).budgets == pytest.approx([1 / 9, 1 / 3, 1.0])  # the lowest at or above min
    assert Rungs(0.25, 0.5, 2).budgets == pytest.approx([0.25, 0.5])
    assert Rungs(0.5, 1.0, 3).budgets == [1.0]
    with pytest.raises(ConfigError, match="eta must be > 1"):
        Rungs(0.1, 1.0, 1.0)
    with pytest.raises(ConfigError, match="min_budget must be in"):
        Rungs(0.5, 0.25, 3)


def test_asha_promotes_the_top_third_of_each_task_and_each_child_once():
    rows = [R(f"s/000000/{k:03d}", "a", 0, k / 10) for k in range(9)]  # a: 0.0 .. 0.8
    rows += [R(f"s/000001/{k:03d}", "b", 0, 0.5, status="failed" if k == 1 else "ok") for k in range(3)]
    rungs = Rungs(1 / 9, 1.0, 3)
    promoted = asha_promotions(rows, rungs, 3)
    # task a: floor(9/3) = 3 best; task b: floor(3/3) = 1, the best by id among equals, never a failed child
    assert [r.trial_id for r in promoted] == ["s/000000/008", "s/000000/007", "s/000000/006", "s/000001/000"]
    rows.append(R("s/000002/000", "a", 1, 0.95, parent_trial_id="s/000000/008"))
    again = asha_promotions(rows, rungs, 3, already={"s/000000/007"})
    assert [r.trial_id for r in again] == ["s/000000/006", "s/000001/000"]
    # rung 1 holds one child: floor(1/3) = 0 go on; with three, the best goes to rung 2 first
    rows += [R(f"s/000002/{k:03d}", "a", 1, 0.1 * k, parent_trial_id=f"s/000000/00{k}") for k in (1, 2)]
    top = asha_promotions(rows, rungs, 3)
    assert top[0].trial_id == "s/000002/000" and top[0].rung == 1


def test_sha_promotes_within_the_bracket_at_least_one_per_task():
    rungs = Rungs(1 / 9, 1.0, 3)
    bracket = [R(f"s/000000/{k:03d}", "a", 0, v) for k, v in enumerate([0.3, 0.9, 0.5, 0.7, 0.1, 0.2])]
    bracket.append(R("s/000000/006", "b", 0, 0.4))
    assert [r.trial_id for r in sha_promotions(bracket, rungs, 3)] == ["s/000000/001", "s/000000/003",
                                                                        "s/000000/006"]
    bracket += [R("s/000000/007", "a", 1, 0.6, parent_trial_id="s/000000/001"),
                R("s/000000/008", "a", 1, 0.8, parent_trial_id="s/000000/003")]
    # the highest rung present decides: rung 1 of task a (b did not reach it)
    assert [r.trial_id for r in sha_promotions(bracket, rungs, 3)] == ["s/000000/008"]
    bracket.append(R("s/000000/009", "a", 2, 0.85, parent_trial_id="s/000000/008"))
    assert sha_promotions(bracket, rungs, 3) == []  # the top rung ends the bracket


def test_each_configuration_is_reported_at_its_highest_rung():
    rows = [R("s/0/000", "a", 0, 0.5), R("s/0/001", "a", 0, 0.9), R("s/1/002", "a", 1, 0.7, parent_trial_id="s/0/000"),
            R("s/2/000", "a", 2, 0.8, parent_trial_id="s/1/002")]
    assert [r.trial_id for r in highest_rungs(rows)] == ["s/0/001", "s/2/000"]
    assert lineage_root("s/2/000", {r.trial_id: r.parent_trial_id for r in rows}) == "s/0/000"


# -- searches with rungs (real text children on the shipped sample tasks) --------------------------

import json  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402

from transfer_automl.search.ledger import LEGACY_SCHEMA, SCHEMA  # noqa: E402
from transfer_automl.steps.search import run_search  # noqa: E402
from transfer_automl.study import SearchSettings, Study, trial_seed  # noqa: E402
from transfer_automl.study.settings import check_pipeline_settings  # noqa: E402
from transfer_automl.tracking import MemoryTracker  # noqa: E402

# 9,000 samples / 100 per batch x budget scale 0.1 = 9 steps; rungs 1/9, 1/3, 1 -> 1, 3, 9 steps.
SPACE = {"name": "fidelity-small", "decisions": [
    {"name": "input_module", "choices": ["random-hashed-64"]},
    {"name": "fine_tune", "choices": [False]},
    {"name": "hidden_layers", "choices": [1, 2]},
    {"name": "hidden_size", "choices": [16, 64]},
    {"name": "activation", "choices": ["relu", "swish"]},
    {"name": "normalization", "choices": ["none", "layer"]},
    {"name": "dropout", "choices": [0.0, 0.2]},
    {"name": "deep_lr", "choices": [0.003, 0.03, 0.3]},
    {"name": "deep_reg", "choices": [0.0001]},
    {"name": "wide_lr", "choices": [0.1]},
    {"name": "wide_reg", "choices": [0.0001, "disable_wide_tower"]},
    {"name": "training_samples", "choices": [9000]},
]}


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fidelity-space") / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


@pytest.fixture()
def base(space_file, samples_dir, feature_cache_dir):
    return dict(tasks=("mpqa", "sms_spam"), space=str(space_file), data_dir=str(samples_dir),
                cache_dir=str(feature_cache_dir), budget_scale=0.1, progress=False)


def _run_rounds(study):
    for step in study.pending_rounds():
        rows = [study.run_trial(t) for t in study.ask_round(step)]
        while more := study.more_trials(step, rows):
            rows += [study.run_trial(t) for t in more]
        study.tell_round(step, rows)
    return study.rows()


def _check_lineages(rows, budgets):
    by_id = {r.trial_id: r for r in rows}
    for r in rows:
        if r.parent_trial_id is None:
            assert r.rung == 0 and r.budget == pytest.approx(budgets[0])
            continue
        parent = by_id[r.parent_trial_id]  # committed, one rung lower, the same configuration and task
        assert (parent.rung + 1, parent.config, parent.task) == (r.rung, r.config, r.task)
        assert r.budget == pytest.approx(budgets[r.rung]) and parent.status == "ok"
    assert len({r.parent_trial_id for r in rows if r.parent_trial_id}) == sum(1 for r in rows if r.parent_trial_id)


@pytest.mark.parametrize("method", ["rs", "re", "reinforce", "pqt"])
def test_asha_works_with_every_kind_of_search_and_tells_it_rung_0_only(base, method):
    study = Study.in_memory({**base, "trials": 12, "batch_size": 4, "method": method, "fidelity": "asha",
                             "method_options": {"population_size": 4, "sample_size": 2} if method == "re" else {}})
    rows = _run_rounds(study)
    budgets = study.settings.rungs.budgets
    _check_lineages(rows, budgets)
    own = [r for r in rows if r.parent_trial_id is None]
    assert len(own) == 12 and study.search.step == 3
    assert any(r.rung == 1 for r in rows), "nothing was promoted"
    # The in-round promotions leave nothing promotable behind (ASHA's rule on the final ledger).
    from transfer_automl.search.fidelity import asha_promotions

    assert asha_promotions(rows, study.settings.rungs, 3) == []
    baselines = getattr(getattr(study.search, "update_rule", None), "baselines", None)
    if baselines is not None:  # the controller's per-task baseline saw exactly the rung-0 rewards
        for i, task in enumerate(study.search.tasks):
            assert baselines.count[i] == sum(1 for r in own if r.task == task)
    # Summaries report each configuration once, at its highest rung.
    assert sum(s.trials for s in study.summaries()) == 12


def test_sha_brackets_continue_children_ledger_mlflow_and_champion_retrain(base, tmp_path):
    """One directory, two synchronous brackets of 6: 6 children at 1/9, the best 2 of each task
    at 1/3, the best of those at 1. A promoted child ends exactly where its configuration trained
    in one go ends (so it continued, and the champion retrain reproduces it); rungs are steps of
    one MLflow run; spent child states are deleted."""
    from transfer_automl.study.refit import RefitCandidate, ranked_rows, reproduce, trial_seed_of
    from transfer_automl.tracking.mlflow import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, tmp_path / "artifacts", uri=uri)
    out = tmp_path / "search"
    study = Study.open({**base, "tasks": ("sms_spam",), "trials": 6, "batch_size": 3, "fidelity": "sha",
                        "out": str(out), "search_id": "sha", "method": "rs"}, tracker=tracker)
    rows = _run_rounds(study)
    budgets = study.settings.rungs.budgets
    _check_lineages(rows, budgets)
    for step in (0, 1):
        mine = [r for r in rows if r.controller_step == step]
        assert [sum(1 for r in mine if r.rung == k) for k in range(3)] == [3, 1, 1]
        table = pq.read_table(out / "ledger" / f"round-{step:06d}.parquet")
        assert table.schema.equals(SCHEMA, check_metadata=False)
        assert sorted(table.column("rung").to_pylist()) == [0, 0, 0, 1, 2]
    # A promoted parent's state is spent and deleted; the top rung keeps none.
    states = sorted(p.relative_to(out).as_posix() for p in out.glob("rounds/*/children/*.pt"))
    assert len(states) == 4  # the 2 x 2 rung-0 children nobody continued
    parents = {r.trial_id: r.parent_trial_id for r in rows}
    top = [r for r in rows if r.rung == 2]
    for row in top:
        root = rows[[r.trial_id for r in rows].index(parents[parents[row.trial_id]])]
        step, index = (int(x) for x in root.trial_id.rsplit("/", 2)[-2:])
        whole = study.backend.trainer.train(json.loads(row.config), study.backend.task_objects["sms_spam"],
                                            seed=trial_seed(0, step, index), budget=1.0)
        assert (whole.val_accuracy, whole.test_accuracy, whole.train_steps) == \
            (row.val_accuracy, row.test_accuracy, 9)
    best = ranked_rows([r.to_dict() for r in rows], 1)["sms_spam"][0]
    assert best["trial_id"] not in parents.values()  # a configuration at the highest rung it reached
    candidate = RefitCandidate(best, trial_seed_of(best, 0, parents))
    reproduce(study.backend.trainer, study.backend.task_objects["sms_spam"], candidate, out)  # raises unless equal
    assert candidate.model is not None and candidate.refit_val_accuracy == best["val_accuracy"]
    study.finish(register=False)
    # MLflow: each configuration one child run, its rungs steps 0, 1, 2 of child/val_accuracy.
    again = MlflowTracker(uri, tmp_path / "artifacts", uri=uri)
    again.start("sha", {}, {})
    for row in top:
        run_id = again.child_runs[row.trial_id][0]
        assert again.child_runs[row.parent_trial_id][0] == run_id
        history = again.client.get_metric_history(run_id, "child/val_accuracy")
        assert sorted(m.step for m in history) == [0, 1, 2]
        assert {m.step: m.value for m in history}[2] == row.val_accuracy


def test_sha_refuses_to_tell_a_bracket_with_promotions_left(base):
    study = Study.in_memory({**base, "tasks": ("mpqa",), "trials": 3, "batch_size": 3, "fidelity": "sha",
                             "method": "rs"})
    rows = [study.run_trial(t) for t in study.ask_round(0)]
    with pytest.raises(ConfigError, match="still has 1 promotion"):
        study.tell_round(0, rows)
    # A runner out of time cuts the bracket to what ran (its promotions asked, not run): told as it is.
    assert len(study.more_trials(0, rows)) == 1
    study.end_round_early(0, rows)
    assert study.tell_round(0, rows).told and study.search.step == 1


def test_a_ledger_without_rung_columns_still_loads_and_resumes(base, tmp_path):
    out = tmp_path / "old"
    run_search({**base, "tasks": ("mpqa",), "trials": 2, "batch_size": 1, "out": str(out), "search_id": "old",
                "method": "rs"},
               tracker=MemoryTracker())
    for path in (out / "ledger").glob("round-*.parquet"):  # as a build before multi-fidelity wrote them
        table = pq.read_table(path)
        pq.write_table(pa.Table.from_pylist(table.select(LEGACY_SCHEMA.names).to_pylist(), schema=LEGACY_SCHEMA),
                       path)
        assert "rung" not in pq.read_schema(path).names
    result = run_search({"out": str(out), "init_from": "resume", "trials": 4, "progress": False},
                        tracker=MemoryTracker())
    assert result.per_task[0].trials == 4
    rows = Study.load(out).rows()
    assert [(r.rung, r.budget, r.parent_trial_id) for r in rows] == [(0, None, None)] * 4
    assert pq.read_schema(out / "ledger" / "round-000003.parquet").names == SCHEMA.names


def test_the_time_budget_stops_between_rounds_and_finishes_cleanly(base, tmp_path):
    """A search of 10,000 trials with a 6 s budget: it stops on time; every trial it started is
    committed (results exist only for committed rounds); a resume continues with the next round."""
    out = tmp_path / "timed"
    started = time.perf_counter()
    result = run_search({**base, "trials": 10_000, "batch_size": 2, "out": str(out), "search_id": "timed",
                         "method": "rs", "fidelity": "asha", "time_budget": "6s"}, tracker=MemoryTracker())
    wall = time.perf_counter() - started
    assert result.stopped.startswith("time budget: 6 s"), result.stopped
    rows = Study.load(out).rows()
    slowest = max(r.duration_s for r in rows)
    assert wall < 6 + 3 * slowest + 3  # the last round's estimate may be off by a child or two; then finish
    committed = {r.controller_step for r in rows}
    assert committed == set(range(len(committed)))
    results = {int(p.parent.parent.name) for p in out.glob("rounds/*/results/*.json")}
    assert results <= committed  # the round it did not start ran nothing
    if "was cut" not in result.stopped:  # stopped before a round it had asked: the resume runs it
        assert (out / "rounds" / f"{len(committed):06d}" / "trials.json").is_file()


def test_fidelity_and_time_budget_settings(base, tmp_path):
    import argparse

    from transfer_automl.study.settings import add_arguments, given_settings

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    given = given_settings(parser.parse_args(["--fidelity", "asha", "--min-budget", "0.1", "--max-budget", "0.9",
                                              "--eta", "2", "--time-budget", "30m"]))
    assert given == {"fidelity": "asha", "min_budget": 0.1, "max_budget": 0.9, "eta": 2.0, "time_budget": 1800.0}
    assert SearchSettings.from_mapping({**base, "out": "x", "trials": 1, "time_budget": "1.5h"}).time_budget == 5400
    with pytest.raises(ConfigError, match="time_budget: expected a duration"):
        SearchSettings.from_mapping({**base, "out": "x", "trials": 1, "time_budget": "soon"})
    with pytest.raises(ConfigError, match=r"eta must be a finite number in \(1, 100\]"):
        SearchSettings.from_mapping({**base, "out": "x", "trials": 1, "eta": 1})
    with pytest.raises(ConfigError, match="min_budget 0.5 is above max_budget 0.2"):
        SearchSettings.from_mapping({**base, "out": "x", "trials": 1, "fidelity": "asha", "min_budget": 0.5,
                                     "max_budget": 0.2})
    with pytest.raises(ConfigError, match="fidelity 'asha': a table holds one result"):
        SearchSettings.from_mapping({"out": "x", "trials": 1, "benchmark": "nasbench201", "fidelity": "asha"})
    assert check_pipeline_settings({"fidelity": "asha", "eta": "3", "min_budget": 0.2}) == \
        {"fidelity": "asha", "eta": 3.0, "min_budget": 0.2}
    with pytest.raises(ConfigError, match="fidelity 'sha'"):
        check_pipeline_settings({"fidelity": "sha"})
    with pytest.raises(ConfigError, match="time_budget"):
        check_pipeline_settings({"time_budget": "30m"})


def test_a_round_that_does_not_fit_is_cut_to_the_trials_that_ran(base, tmp_path, monkeypatch):
    """Children of at least 0.5 s, a 2 s budget, rounds of 10 (no estimate before the first
    child): the round is cut to the k < 10 children that fit and told; nothing else ran, and the
    run ends within one child of its budget."""
    from transfer_automl.children.trainer import TextChildTrainer

    real = TextChildTrainer.train

    def slow(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        time.sleep(0.5)
        result.duration_s += 0.5
        return result

    monkeypatch.setattr(TextChildTrainer, "train", slow)
    out = tmp_path / "cut"
    started = datetime.now(UTC)
    result = run_search({**base, "tasks": ("mpqa",), "trials": 30, "batch_size": 10, "out": str(out),
                         "search_id": "cut", "method": "reinforce", "time_budget": 2.0}, tracker=MemoryTracker())
    study = Study.load(out)
    rows = study.rows()
    k = len(rows)
    assert 1 <= k < 10 and f"round 0 was cut to the {k} trial(s) that fit" in result.stopped
    # The last child ended within one child of the budget (plus opening the search on a busy machine).
    assert (max(r.ended_at for r in rows) - started).total_seconds() < 2.0 + max(r.duration_s for r in rows) + 1.5
    assert [r.trial_id for r in rows] == [f"cut/000000/{i:03d}" for i in range(k)]
    assert study.search.step == 1
    assert len(json.loads((out / "rounds" / "000000" / "trials.json").read_text())) == k
    assert sorted(p.name for p in (out / "rounds" / "000000" / "results").iterdir()) == \
        [f"{i:03d}.json" for i in range(k)]
    run_search({"out": str(out), "init_from": "resume", "time_budget": 1.5, "progress": False},
               tracker=MemoryTracker())  # continues with round 1
    assert Study.load(out).rows()[k].trial_id == "cut/000001/000"


def test_the_cost_model_fits_seconds_per_unit_of_work_per_group():
    from transfer_automl.study.cost import CostModel

    class Trainer:
        def work(self, config, budget, from_budget=None):
            steps = config["steps"] * (budget or 1.0) - config["steps"] * (from_budget or 0.0)
            return config["module"], steps

    model = CostModel(Trainer())
    assert model.estimate({"module": "a", "steps": 100}, None) is None  # nothing measured yet
    for seconds in (1.0, 1.2, 9.0):  # the first child also paid for its features: the median ignores it
        model.observe({"module": "a", "steps": 100}, None, seconds)
    assert model.estimate({"module": "a", "steps": 300}, None) == pytest.approx(3.6)
    assert model.estimate({"module": "a", "steps": 300}, 1.0, 1 / 3) == pytest.approx(2.4)  # a promotion's part
    # A group with fewer than two children borrows every child's rate: median(0.01, 0.012, 0.09, 1.0).
    model.observe({"module": "b", "steps": 10}, None, 10.0)
    assert model.estimate({"module": "b", "steps": 10}, None) == pytest.approx(10 * 0.051)
    model.observe({"module": "b", "steps": 10}, None, 12.0)  # then its own: median(1.0, 1.2)
    assert model.estimate({"module": "b", "steps": 10}, None) == pytest.approx(11.0)


def test_a_child_three_times_over_its_estimate_is_reported(base, monkeypatch, capsys):
    from transfer_automl.children.trainer import TextChildTrainer

    real, calls = TextChildTrainer.train, []

    def sometimes_slow(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        calls.append(1)
        result.duration_s = 5.0 if len(calls) == 4 else 0.5  # as if the fourth child hung
        return result

    monkeypatch.setattr(TextChildTrainer, "train", sometimes_slow)
    study = Study.in_memory({**base, "tasks": ("mpqa",), "trials": 6, "batch_size": 3, "method": "rs"})
    rows = _run_rounds(study)
    assert [r.expected_cost_s is None for r in rows] == [True] * 3 + [False] * 3  # fitted on committed rounds
    assert study.slow_children == [rows[3].trial_id]
    assert f"trial {rows[3].trial_id} took 5.0 s" in capsys.readouterr().err


def test_pipeline_steps_run_asha_with_promotions_asked_with_each_round(base, tmp_path, monkeypatch):
    """The Kubeflow steps, one process per call in a pipeline: each round's controller step asks
    the new trials and the promotions the committed rounds allow; a pod continues a parent's child
    from the search directory; results may come back in any order."""
    from transfer_automl.steps import pipeline_steps as steps

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "pipeline"
    settings = {k: v for k, v in base.items() if k != "progress"} | {
        "tasks": ["mpqa"], "method": "rs", "fidelity": "asha", "search_id": "kfp"}
    start = steps.init_search(out, settings, children_per_round=4, rounds=3)
    for k in range(start, start + 3):
        trials = steps.controller_step(out, k, 4)
        results = [steps.train_child(out, t) for t in reversed(trials)]
        steps.aggregate_rewards(out, k, results)
    rows = Study.load(out).rows()
    _check_lineages(rows, Study.load(out).settings.rungs.budgets)
    promoted = [r for r in rows if r.parent_trial_id]
    assert promoted and all(r.controller_step > int(r.parent_trial_id.split("/")[1]) for r in promoted)
    assert sum(1 for r in rows if r.parent_trial_id is None) == 12

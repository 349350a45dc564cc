"""Whole pipelines run by kfp.local (lightweight components in subprocesses of this Python),
through the function `taml pipeline run --local` uses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from transfer_automl.search import Ledger, load_checkpoint

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def test_a_bad_parameter_is_refused_before_anything_runs(tmp_path, capsys):
    from transfer_automl.cli import main

    argv = ["pipeline", "run", "--local", "multitask_search", "--pipelines-dir", str(REPO / "pipelines"),
            "--pipeline-root", str(tmp_path / "root")]
    assert main([*argv, "settings={'seed': 1}", f"search_dir={tmp_path}"]) == 2  # not JSON
    assert "pipeline parameter settings: \"{'seed': 1}\" is not a valid Dict" in capsys.readouterr().err
    assert main([*argv, "seed=1", f"search_dir={tmp_path}"]) == 2  # a setting goes in `settings`
    assert ("pipeline parameter 'seed' is not an input of multitask-search; inputs: ['max_trials', 'refit', 'refit_k', 'search_dir', 'settings']"
            in capsys.readouterr().err)
    # the search's settings are checked by SearchSettings before any task runs
    for settings, message in (('{"entropy_weight": NaN}', "settings.entropy_weight must be a finite number"),
                              ('{"sead": 1}', "unknown setting(s) ['sead']"),
                              ('{"trials": 8}', "['trials'] are set by the pipeline"),
                              ('{"method": "re", "method_options": {"population": 5}}', "['population'] are not "
                                                                                         "settings of method 're'")):
        assert main([*argv, f"settings={settings}", f"search_dir={tmp_path / 's'}"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "s").exists()
    assert main(argv) == 2
    assert "needs parameter(s) ['search_dir']" in capsys.readouterr().err
    assert main([*argv[:3], "no_such_pipeline", *argv[4:]]) == 2
    assert "pipeline 'no_such_pipeline' not found" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


def _outputs(root: Path, task_prefix: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in root.rglob("executor_output.json") if p.parent.name.startswith(task_prefix)]


# A multitask_search run through kfp.local, its outputs and its identity with `taml search`:
# tests/e2e/test_runner_parity.py.


@pytest.fixture()
def three_task_table(tmp_path) -> Path:
    """t3 ranks the configurations as t1 does and opposite to t2: t1 is t3's closest source."""
    rows = [{"depth": d, "act": a, "t1": d + (a == "relu"), "t2": -d - (a == "relu"), "t3": 2 * (d + (a == "relu")) + 0.1}
            for d in (1, 2, 3, 4) for a in ("relu", "tanh")]
    path = tmp_path / "three.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_transfer_search_then_scheduled_retraining_run_locally(tmp_path, three_task_table):
    from pipelines.transfer_search.pipeline import build_pipeline
    from transfer_automl.kubeflow.local import run_local
    from transfer_automl.steps import pipeline_steps as steps

    source = tmp_path / "source"  # the previous search, on t1 and t2, run through the steps directly
    table = {"table": str(three_task_table), "metric_columns": ["t1", "t2", "t3"]}
    steps.init_search(source, {"tasks": ["t1", "t2"], "search_id": "source", **table}, 16, 1)
    trials = steps.controller_step(source, 0, 16)
    steps.aggregate_rewards(source, 0, [steps.train_child(source, t) for t in trials])

    search_dir, root = tmp_path / "target", tmp_path / "pipeline_root"
    run_local(build_pipeline(rounds=1, children_per_round=1, gpu=False),  # a child per round keeps it short
              {"search_dir": str(search_dir), "target_tasks": ["t3"], "source_search": str(source),
               "distance": "rank_correlation", "select": "all", "settings": {"search_id": "target", **table}}, root)
    distance = {(r["source"], r["target"]): r["mean"] for r in pq.read_table(search_dir / "distance.parquet").to_pylist()}
    assert distance[("t1", "t3")] < distance[("t2", "t3")]
    [chosen] = _outputs(root, "task-distance")
    assert chosen["parameterValues"]["Output"] == {"t3": ["t1", "t2"]}  # closest first
    provenance = json.loads((search_dir / "transfer.json").read_text())
    assert provenance["mode"] == "warm_start" and provenance["sources"] == {"t3": ["t1", "t2"]}
    rows = Ledger(search_dir / "ledger").read().to_pylist()
    assert [r["task"] for r in rows] == ["t3"] and {r["search_id"] for r in rows} == {"target"}
    target = load_checkpoint(search_dir / "checkpoint.pt")
    assert target["step"] == 1 and target["tasks"] == ["t3"]
    # warm start: the target began with t1's task embedding (the closest source's)
    before = load_checkpoint(source / "checkpoint.pt")["controller_state"]["task_embeddings.weight"][0]
    after = target["controller_state"]["task_embeddings.weight"][0]
    assert torch.norm(after - before) < 0.1 * torch.norm(before)  # moved only by one update
    assert list(root.rglob("html"))

    # The nightly run: the newest search for t3 under tmp_path is the one just transferred.
    from pipelines.scheduled_retraining.pipeline import build_pipeline as retraining

    root = tmp_path / "retraining_root"
    run_local(retraining(rounds=1, children_per_round=1, gpu=False),
              {"search_root": str(tmp_path), "tasks": ["t3"]}, root)
    rows = Ledger(search_dir / "ledger").read().to_pylist()
    assert sorted(r["controller_step"] for r in rows) == [0, 1] and {r["task"] for r in rows} == {"t3"}
    assert load_checkpoint(search_dir / "checkpoint.pt")["step"] == 2
    [resumed] = _outputs(root, "resume-search")
    assert resumed["parameterValues"] == {"search_dir": str(search_dir), "round_index": 1}
    [champion] = [p for p in root.rglob("summary") if "register-champion" in str(p)]
    assert "none registered" in champion.read_text()  # a table search has no model to register
    assert list(root.rglob("html"))


def _tiny_text_space(path: Path) -> Path:
    path.write_text("\n".join(["name: tiny-packed", "decisions:"] + [
        f"  - {{name: {name}, choices: {choices}}}" for name, choices in [
            ("input_module", "[random-hashed-64]"), ("fine_tune", "[false]"), ("hidden_layers", "[1]"),
            ("hidden_size", "[8]"), ("activation", "[relu]"), ("normalization", "[none]"), ("dropout", "[0.0]"),
            ("deep_lr", "[0.1, 0.3]"), ("deep_reg", "[0.0, 0.001]"), ("wide_lr", "[0.1]"),
            ("wide_reg", "[disable_wide_tower]"), ("training_samples", "[1000, 3000]")]]) + "\n")
    return path


def test_asha_promotions_run_in_the_pipeline_and_continue_their_parents(tmp_path, samples_dir):
    """The pipelines take the search's multi-fidelity settings as `taml search` does: with
    fidelity asha, round 1 asks its own rung-0 trials plus the promotion round 0's results allow,
    and the promoted child continues its parent (rung 1, full budget, parent recorded). A trial
    with no parent travels without the key: kfp.local refuses a null in a loop item."""
    from transfer_automl.cli import main

    search_dir, root = tmp_path / "search", tmp_path / "root"
    settings = {"tasks": ["mpqa"], "space": str(_tiny_text_space(tmp_path / "space.yaml")),
                "data_dir": str(samples_dir), "method": "rs", "seed": 3, "search_id": "asha-pipeline",
                "fidelity": "asha", "min_budget": 0.3, "eta": 3}
    assert main(["pipeline", "run", "--local", "multitask_search", "--pipelines-dir", str(REPO / "pipelines"),
                 "--pipeline-root", str(root), "--rounds", "2", "--children", "3", "--cpu",
                 f"search_dir={search_dir}", f"settings={json.dumps(settings)}"]) == 0
    rows = Ledger(search_dir / "ledger").read().to_pylist()
    own = [r for r in rows if r["parent_trial_id"] is None]
    promoted = [r for r in rows if r["parent_trial_id"] is not None]
    assert len(own) == 6 and {(r["rung"], round(r["budget"], 3)) for r in own} == {(0, 0.333)}
    assert [(r["rung"], r["budget"], r["controller_step"]) for r in promoted] == [(1, 1.0, 1)]
    [parent] = [r for r in own if r["trial_id"] == promoted[0]["parent_trial_id"]]
    assert parent["controller_step"] == 0 and parent["config"] == promoted[0]["config"]
    assert {r["status"] for r in rows} == {"ok"}


def test_text_children_train_in_packs_one_per_gpu_locally(tmp_path, samples_dir):
    """`--gpus 2 --children 4 --cpu`: each round's 4 text children in 2 packs of 2, each pack one
    train_pack task (stacked training on CPU here, as on a GPU in the CUDA image)."""
    from transfer_automl.cli import main

    space = _tiny_text_space(tmp_path / "space.yaml")
    search_dir, root = tmp_path / "search", tmp_path / "root"
    settings = {"tasks": ["mpqa"], "space": str(space), "data_dir": str(samples_dir), "method": "rs", "seed": 3,
                "search_id": "packed"}
    assert main(["pipeline", "run", "--local", "multitask_search", "--pipelines-dir", str(REPO / "pipelines"),
                 "--pipeline-root", str(root), "--rounds", "1", "--children", "4", "--gpus", "2", "--cpu",
                 f"search_dir={search_dir}", f"settings={json.dumps(settings)}"]) == 0
    packs = _outputs(root, "train-pack")
    assert sorted(len(p["parameterValues"]["Output"]) for p in packs) == [2, 2]
    rows = Ledger(search_dir / "ledger").read().to_pylist()
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert sorted(r["trial_id"] for p in packs for r in p["parameterValues"]["Output"]) == \
        sorted(r["trial_id"] for r in rows)

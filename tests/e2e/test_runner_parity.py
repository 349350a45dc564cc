"""One search engine: `taml search`, the Kubeflow pipeline (run by kfp.local) and the Study driven
directly run the same small search and must leave identical results: ledger rows, checkpoint,
MLflow params, metric keys and artifacts, and registered champions. On a benchmark table and on a
real text task (trained children, champions in the model registry)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from same_state import assert_same_state  # tests/ is on the path, like s3_fixtures
from transfer_automl.cli import main
from transfer_automl.search import Ledger, load_checkpoint
from transfer_automl.study import SearchSettings, Study

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_VOLATILE = ("started_at", "ended_at", "duration_s", "expected_cost_s")  # times, and estimates made of them
TINY_TEXT_SPACE = {
    "name": "taml-tiny",
    "decisions": [
        {"name": "input_module", "choices": ["random-hashed-64"]},
        {"name": "fine_tune", "choices": [False, True]},
        {"name": "hidden_layers", "choices": [1]},
        {"name": "hidden_size", "choices": [16, 32]},
        {"name": "activation", "choices": ["relu"]},
        {"name": "normalization", "choices": ["none"]},
        {"name": "dropout", "choices": [0.0]},
        {"name": "deep_lr", "choices": [0.1]},
        {"name": "deep_reg", "choices": [0.0]},
        {"name": "wide_lr", "choices": [0.1]},
        {"name": "wide_reg", "choices": [0.0001, "disable_wide_tower"]},
        {"name": "training_samples", "choices": [10000]},
    ],
}


def _three_ways(tmp_path: Path, settings: dict, rounds: int, children: int) -> dict[str, Path]:
    """The same search as `taml search`, as the multitask_search pipeline and as a Study; the three
    have one search id, so each has a store of its own (TAML_HOME: its directory's mlflow.db)."""
    dirs = {name: tmp_path / name for name in ("cli", "pipeline", "study")}
    with pytest.MonkeyPatch.context() as mp:
        for name, run in (("cli", _cli), ("pipeline", _pipeline), ("study", _study)):
            mp.setenv("TAML_HOME", str(dirs[name]))
            run(tmp_path, dirs[name], settings, rounds, children)
    return dirs


def _cli(tmp_path: Path, out: Path, settings: dict, rounds: int, children: int) -> None:
    flags = [f"--{k.replace('_', '-')}={','.join(v) if isinstance(v, list) else v}" for k, v in settings.items()
             if k != "method_options"]
    flags += [f"--method-option={k}={v}" for k, v in settings.get("method_options", {}).items()]
    assert main(["search", *flags, "--trials", str(rounds * children), "--batch-size", str(children),
                 "--out", str(out), "--no-progress"]) == 0


def _pipeline(tmp_path: Path, out: Path, settings: dict, rounds: int, children: int) -> None:
    assert main(["pipeline", "run", "--local", "multitask_search", "--pipelines-dir", str(REPO / "pipelines"),
                 "--rounds", str(rounds), "--children", str(children), "--cpu",
                 "--pipeline-root", str(tmp_path / "kfp-root"), f"search_dir={out}",
                 f"settings={json.dumps(settings)}"]) == 0


def _study(tmp_path: Path, out: Path, settings: dict, rounds: int, children: int) -> None:
    study = Study.open(SearchSettings.from_mapping({**settings, "trials": rounds * children, "batch_size": children,
                                                    "out": str(out), "progress": False}))
    for step in study.pending_rounds():
        study.tell_round(step, [study.run_trial(t) for t in study.ask_round(step)])
    study.finish()


def _ledger(directory: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in _VOLATILE} for r in Ledger(directory / "ledger").read().to_pylist()]


def _checkpoint(directory: Path) -> dict:
    body = load_checkpoint(directory / "checkpoint.pt")
    body["search_settings"] = {k: v for k, v in body["search_settings"].items() if k not in ("out", "progress")}
    return body


def _mlflow(directory: Path) -> dict:
    """What MLflow holds of the search: controller params, metric keys, artifacts, child runs,
    registered champions."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{directory / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    controller = next(r for r in runs if r.data.tags.get("taml.role") == "controller")
    children = sorted((r for r in runs if r.data.tags.get("taml.role") == "child"),
                      key=lambda r: r.data.tags["taml.trial_id"])
    champions = {}
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name='{model.name}'"):
            champions[(model.name, version.version)] = (version.tags.get("taml.trial_id"),
                                                        version.tags.get("taml.val_accuracy"))
    return {
        "params": {k: v for k, v in controller.data.params.items() if k != "out"},
        "status": controller.info.status,
        "metrics": sorted(controller.data.metrics),
        "artifacts": sorted(a.path for a in client.list_artifacts(controller.info.run_id)),
        "children": [(r.data.tags["taml.trial_id"], r.data.params, sorted(r.data.metrics), r.info.status)
                     for r in children],
        "champions": champions,
    }


def _assert_identical(dirs: dict[str, Path], trials: int) -> dict:
    reference = dirs["cli"]
    rows = _ledger(reference)
    assert len(rows) == trials and len({r["trial_id"] for r in rows}) == trials
    for name, directory in dirs.items():
        assert _ledger(directory) == rows, name
        assert_same_state(_checkpoint(reference), _checkpoint(directory), f"{name} checkpoint")
    tracked = _mlflow(reference)
    assert tracked["status"] == "FINISHED" and len(tracked["children"]) == trials
    assert tracked["artifacts"] in (["checkpoint.pt", "settings.json", "space.yaml"],  # a table: no refit
                                    ["checkpoint.pt", "refit.json", "settings.json", "space.yaml"])
    for name, directory in dirs.items():
        assert _mlflow(directory) == tracked, name
    return tracked


def test_the_three_runners_agree_on_a_benchmark_table(tmp_path):
    settings = {"benchmark": "nasbench201", "method": "reinforce", "seed": 5, "search_id": "parity",
                "controller_lr": 0.01, "entropy_weight": 0.01, "method_options": {"max_grad_norm": 1.0}}
    dirs = _three_ways(tmp_path, settings, rounds=2, children=2)
    tracked = _assert_identical(dirs, trials=4)
    assert tracked["params"]["controller_lr"] == "0.01" and "space_fingerprint" in tracked["params"]
    assert tracked["champions"] == {}  # children looked up in a table: no model to register

    # What the pipeline adds for the Kubeflow UI: per round a summary, metrics and the next round's
    # index; the champions' summary; the HTML report.
    root = tmp_path / "kfp-root"
    stored = json.loads((dirs["pipeline"] / "settings.json").read_text())
    assert (stored["trials"], stored["batch_size"], stored["method_options"]) == (4, 2, {"max_grad_norm": 1.0})
    summaries = [p for p in root.rglob("summary") if "aggregate-rewards" in str(p)]
    assert len(summaries) == 2 and "accuracy-top10" in summaries[0].read_text()
    outputs = [json.loads(p.read_text()) for p in root.rglob("executor_output.json")
               if p.parent.name.startswith("aggregate-rewards")]
    assert sorted(o["parameterValues"]["Output"] for o in outputs) == [1, 2]  # the next round's index
    logged = outputs[0]["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert "controller/loss" in logged and any(k.endswith("/accuracy_top10") for k in logged), sorted(logged)
    [champion] = [p for p in root.rglob("summary") if "register-champion" in str(p)]
    assert "none registered" in champion.read_text()
    [html] = list(root.rglob("html"))  # the report component's HTML artifact
    assert "<html" in html.read_text().lower() and "parity" in html.read_text()


def test_the_three_runners_agree_on_a_real_text_task(tmp_path, samples_dir, feature_cache_dir):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_TEXT_SPACE))
    settings = {"tasks": ["sms_spam"], "space": str(space), "method": "pqt", "seed": 2, "search_id": "parity-text",
                "data_dir": str(samples_dir), "cache_dir": str(feature_cache_dir), "budget_scale": 0.01}
    tracked = _assert_identical(_three_ways(tmp_path, settings, rounds=1, children=2), trials=2)
    (name, _), (trial_id, _) = next(iter(tracked["champions"].items()))
    assert name == "taml-sms_spam" and trial_id.startswith("parity-text/")

"""Each task's champion: the search's best child, retrained, logged and registered in MLflow.

The ledger keeps configurations, not models, so the best row of each task (highest validation
accuracy among trials with status ok; the first of equals, as the search summary) is retrained
with the seed it had (`study.trial_seed`). A child is deterministic given its configuration, data
and seed, and the retrained model must reproduce the row's validation and test accuracy; if it
does not (other task data, a nondeterministic device) nothing is registered and the error says
so. What is registered and when the alias moves: tracking/champion.py; the model itself, raw texts
in and labels out, is serving/export.py's bundle.

Every runner registers through `register_champions` (`Study.finish`, the pipelines' last step,
`taml runs register`). Tabular searches (benchmark or user tables) look children up: there is no
model to log, and the report says so instead of registering anything.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transfer_automl.errors import ConfigError, SearchSpaceError, TamlError
from transfer_automl.study.search_dir import SETTINGS_NAME, SearchDir
from transfer_automl.tracking.champion import ChampionCandidate, ChampionReport
from transfer_automl.trial_status import STATUS_OK


def register_champions(search_dir: str | Path, tracking_uri: str | None = None, *, data_dir: str | None = None,
                       cache_dir: Any = None, tasks: Sequence[str] | None = None,
                       on_phase: Any = None) -> ChampionReport:
    """Retrain, log and register the best child of each task of the search in `search_dir` (a
    local directory or an s3:// uri). The tracking URI: `tracking_uri`, else MLFLOW_TRACKING_URI,
    else the search's default store (search_dir.py). `tasks` are the task names or files as given to the
    search and `data_dir` where names resolve (default: a pipeline search's settings.json, else
    the usual data directory); `cache_dir` the frozen-feature cache (default: the search's).
    `on_phase(name, detail)` hears each refit and registration as it starts."""
    announce = on_phase or (lambda name, detail="": None)
    out = SearchDir.of(search_dir)
    body = out.load_checkpoint()
    search_id = str(body["search_id"])
    saved = dict(body.get("search_settings", {}))
    reason = _no_model_reason(body, saved)
    if reason:
        return ChampionReport(search_id, "", skipped=reason)
    rows = out.ledger.read().to_pylist()
    best = _best_rows(rows)
    parents = {r["trial_id"]: r.get("parent_trial_id") for r in rows}
    if not best:
        return ChampionReport(search_id, "", skipped=f"search {search_id} has no trial with status ok: no model to log")
    if out.store.exists(SETTINGS_NAME):
        pipeline = out.read_json(SETTINGS_NAME)
        record = pipeline.get("_data") if isinstance(pipeline.get("_data"), dict) else {}
        # where the search read its tasks (absolute, study.Study records it), before the data_dir it
        # was given, which may be relative to a working directory that is not this one
        data_dir = data_dir or record.get("data_dir") or pipeline.get("data_dir")
        tasks = tasks or _recorded_tasks(pipeline.get("tasks"), record)
        cache_dir = cache_dir or pipeline.get("cache_dir")

    from transfer_automl.serving.export import serving_model
    from transfer_automl.tracking.mlflow import MlflowModelRegistry

    registry = MlflowModelRegistry(out.default_tracking_uri(), tracking_uri)
    backend = _backend(body, saved, tuple(tasks or body["tasks"]), data_dir, cache_dir or out.store.sub("cache/features"))
    trainer, loaded = backend.trainer, backend.task_objects
    report = ChampionReport(search_id, registry.uri)
    for task_name, row in sorted(best.items()):
        if task_name not in loaded:
            raise ConfigError(f"tasks: the ledger of {out} has task {task_name!r}, which is not among {sorted(loaded)}")
        candidate = ChampionCandidate(task_name, str(row["search_id"]), str(row["trial_id"]),
                                      out.ledger.round_name(int(row["controller_step"])), float(row["val_accuracy"]),
                                      float(row["test_accuracy"]), json.loads(row["config"]))
        announce("refit", f"retraining {task_name}'s best child (trial {row['trial_id']}, val "
                          f"{float(row['val_accuracy']):.4f}) to log it as a model")
        model = _retrain(trainer, loaded[task_name], row, int(saved.get("seed", 0)), out, parents)
        announce("registration", f"logging and registering {task_name}'s model in {registry.uri}")
        run_id = _trial_run_id(registry, out, candidate)
        with tempfile.TemporaryDirectory(prefix="taml-champion-") as bundle:
            served = serving_model(model, loaded[task_name], trainer.config.wide_buckets, bundle)
            report.registered.append(registry.register(candidate, served, run_id))
    return report


def _recorded_tasks(tasks: Any, record: dict[str, Any]) -> Any:
    """Tasks given as .parquet paths, replaced by the absolute paths the search recorded reading."""
    files = record.get("files") if isinstance(record.get("files"), dict) else {}
    if not tasks:
        return tasks
    return [str(files[Path(t).stem]["path"]) if str(t).endswith(".parquet") and Path(t).stem in files else t
            for t in tasks]


def register_after_search(settings: Any, out: Any, tracker: Any, on_phase: Any = None) -> ChampionReport:
    """`Study.finish`'s last part (with the study's own MLflow tracker): register the champions of
    a text search. A tabular search, an unreachable tracker or a failure is reported, never
    raised: the search itself is done, and `taml runs register` can do this later."""
    if settings.tabular:
        return ChampionReport("", "", skipped="a tabular search (children looked up in a table): there is no model to log")
    if getattr(tracker, "down", False):
        return ChampionReport("", tracker.location, skipped=f"tracker {tracker.location} unreachable; register the "
                                                            f"models later with `taml runs register {out}`")
    try:
        return register_champions(str(out), tracker.location, data_dir=settings.data_dir, tasks=settings.tasks,
                                  cache_dir=settings.cache_dir, on_phase=on_phase)
    except Exception as exc:  # the search is done and recorded; registering can be retried by hand
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return ChampionReport("", tracker.location, skipped=f"registering failed ({message}); retry with "
                                                            f"`taml runs register {out}`")


def _backend(body: dict[str, Any], saved: dict[str, Any], tasks: tuple[str, ...], data_dir: str | None,
             cache_dir: Any) -> Any:
    """The trainer and tasks the search had (text or image children, study/backends.py), over the
    checkpoint's own space (a built-in one by name, since the backend chooses by it)."""
    from transfer_automl.space import BUILTIN_SPACES, save_space, space_from_dict
    from transfer_automl.study.backends import text_backend

    budget_scale = float(saved.get("budget_scale", 0.05))
    named = saved.get("space")
    if named is None or named in BUILTIN_SPACES:
        return text_backend(tasks, named or "taml-text", data_dir, cache_dir, budget_scale)
    with tempfile.TemporaryDirectory() as tmp:
        space_file = Path(tmp) / "space.yaml"
        save_space(space_from_dict(body["space"], source="checkpoint"), space_file)
        return text_backend(tasks, str(space_file), data_dir, cache_dir, budget_scale)


def _no_model_reason(body: dict[str, Any], saved: dict[str, Any]) -> str:
    """Why the search has no model to log ("" when its children are trained text models)."""
    from transfer_automl.children.spec import child_spec
    from transfer_automl.space import space_from_dict

    table_search = (f"search {body['search_id']} looks its children up in a table "
                    f"({saved.get('benchmark') or 'a user table'}): there is no model to log")
    if saved.get("benchmark"):
        return table_search
    space = space_from_dict(body["space"], source="checkpoint")
    try:  # a table's space lacks the text child's decisions
        child_spec({d.name: d.choices[0] for d in space.decisions}, 1.0, batch_size=100)
    except (SearchSpaceError, ConfigError, KeyError, ValueError, TypeError):
        return table_search
    return ""


def _best_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each task's best configuration by validation accuracy at the highest rung it reached."""
    from transfer_automl.search.fidelity import highest_rungs

    best: dict[str, dict[str, Any]] = {}
    for row in highest_rungs(rows):
        if row["status"] == STATUS_OK and (row["task"] not in best or row["val_accuracy"] > best[row["task"]]["val_accuracy"]):
            best[row["task"]] = row
    return best


def _retrain(trainer: Any, task: Any, row: dict[str, Any], search_seed: int, out: Any,
             parents: dict[str, Any] | None = None) -> Any:
    """The trial's model, trained again with its seed; refused unless it reproduces the ledger row.
    A promoted trial (multi-fidelity) is its rung-0 trial's child trained in one go to its budget:
    what continuing it rung by rung gives (children/trainer.py)."""
    from transfer_automl.search.fidelity import lineage_root
    from transfer_automl.study.study import trial_seed

    root = lineage_root(row["trial_id"], parents or {})
    step, index = (int(part) for part in root.rsplit("/", 2)[-2:])  # trial ids are "<search_id>/<step>/<k>"
    extra = {"budget": row["budget"]} if row.get("budget") is not None else {}
    result = trainer.train(json.loads(row["config"]), task, keep_model=True,
                           seed=trial_seed(search_seed, step, index), **extra)
    if result.status != STATUS_OK:
        raise TamlError(f"retraining trial {row['trial_id']} of {out} failed ({result.status}: {result.error})")
    if (result.val_accuracy, result.test_accuracy) != (row["val_accuracy"], row["test_accuracy"]):
        raise TamlError(
            f"retraining trial {row['trial_id']} of {out} gave val/test accuracy {result.val_accuracy:.4f}/"
            f"{result.test_accuracy:.4f}, the ledger says {row['val_accuracy']:.4f}/{row['test_accuracy']:.4f}; "
            "was the search run on other task data (--data-dir) or another device?")
    return result.model.cpu().eval()


def _trial_run_id(registry: Any, out: Any, candidate: ChampionCandidate) -> str:
    """The trial's child run; a trial MLflow missed (an outage) is replayed from the ledger first."""
    run_id = registry.trial_run_id(candidate.search_id, candidate.trial_id)
    if run_id is None:
        from transfer_automl.study.tracking import sync_runs

        sync_runs(str(out), registry.uri)
        run_id = registry.trial_run_id(candidate.search_id, candidate.trial_id)
    if run_id is None:
        raise TamlError(f"trial {candidate.trial_id} has no run in MLflow {registry.uri} even after `taml runs sync`")
    return run_id

"""Each task's champion: the search's best model per task, logged and registered in MLflow.

The ledger keeps configurations, not models, so each task's champion is trained again by the
refit (study/refit.py): with `refit="none"` the best row retrained with its seed and budget, which
must reproduce the row's validation and test accuracy (else nothing is registered and the error
says so); with `"best"`/`"topk"` the best of the top configurations retrained at the full budget
with early stopping, chosen by refit validation accuracy; with `"ensemble"` all of those top
configurations together, one model averaging their class probabilities. What is registered and when the alias
moves: tracking/champion.py; the model itself, raw texts in and labels out, is
serving/export.py's bundle.

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
from transfer_automl.study.search_dir import SearchDir
from transfer_automl.tracking.champion import ChampionCandidate, ChampionReport


def register_champions(search_dir: str | Path, tracking_uri: str | None = None, *, data_dir: str | None = None,
                       cache_dir: Any = None, tasks: Sequence[str] | None = None,
                       on_phase: Any = None, refit: str = "topk", refit_k: int = 3) -> ChampionReport:
    """Refit (study/refit.py: `refit` none, best, topk or ensemble, `refit_k` candidates per task), log and
    register each task's champion of the search in `search_dir` (a local directory or an s3:// uri).
    The tracking URI: `tracking_uri`, else MLFLOW_TRACKING_URI, else the search's default store
    (search_dir.py). `tasks` are the task names or files as given to the search and `data_dir` where
    names resolve (default: a pipeline search's settings.json, else the usual data directory);
    `cache_dir` the frozen-feature cache (default: the search's). `on_phase(name, detail)` hears
    each refit and registration as it starts."""
    from transfer_automl.study.refit import check_refit, ranked_rows, refit_models

    check_refit(refit, refit_k)
    announce = on_phase or (lambda name, detail="": None)
    out = SearchDir.of(search_dir)
    body = out.load_checkpoint()
    search_id = str(body["search_id"])
    saved = dict(body.get("search_settings", {}))
    reason = _no_model_reason(body, saved)
    if reason:
        return ChampionReport(search_id, "", skipped=reason)
    if not ranked_rows(out.ledger.read().to_pylist(), 1):
        return ChampionReport(search_id, "", skipped=f"search {search_id} has no trial with status ok: no model to log")

    from transfer_automl.serving.export import serving_ensemble, serving_model
    from transfer_automl.tracking.mlflow import MlflowModelRegistry

    registry = MlflowModelRegistry(out.default_tracking_uri(), tracking_uri)  # refused before any training
    refitted = refit_models(out, refit, refit_k, data_dir=data_dir, tasks=tasks, cache_dir=cache_dir,
                            on_phase=on_phase)
    report = ChampionReport(search_id, registry.uri)
    for task_name, chosen in sorted(refitted.champions.items()):
        ensemble = refitted.ensembles.get(task_name)
        if ensemble is not None:  # registered on its first member's trial run, with the ensemble's scores
            chosen = ensemble.members[0]
        row = chosen.row
        val, test = (ensemble.val_accuracy, ensemble.test_accuracy) if ensemble else (chosen.refit_val_accuracy,
                                                                                        chosen.refit_test_accuracy)
        candidate = ChampionCandidate(
            task_name, str(row["search_id"]), str(row["trial_id"]), out.ledger.round_name(int(row["controller_step"])),
            val, test, _config(row), refit=_refit_tags(refit, refit_k, chosen, ensemble))
        announce("registration", f"logging and registering {task_name}'s model in {registry.uri}")
        run_id = _trial_run_id(registry, out, candidate)
        task = refitted.task_objects[task_name]
        with tempfile.TemporaryDirectory(prefix="taml-champion-") as bundle:
            if ensemble is not None:
                served = serving_ensemble([m.model for m in ensemble.members], task, refitted.wide_buckets, bundle)
            else:
                served = serving_model(chosen.model, task, refitted.wide_buckets, bundle)
            report.registered.append(registry.register(candidate, served, run_id))
    registry.log_refit(search_id, refitted.report)
    return report


def _config(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(row["config"])


def _refit_tags(mode: str, k: int, chosen: Any, ensemble: Any = None) -> dict[str, str]:
    """What the registered model's tags say about how it was trained (none: the ledger's child; an
    ensemble: its first member's training, and every member's trial)."""
    if mode == "none":
        return {}
    tags = {"mode": mode, "k": str(k), "seed": str(chosen.seed), "steps": str(chosen.steps),
            "max_steps": str(chosen.max_steps), "cost_s": f"{chosen.cost_s:.3f}",
            "search_val_accuracy": repr(float(chosen.row["val_accuracy"]))}
    if ensemble is not None:
        tags["ensemble_trial_ids"] = ",".join(str(m.row["trial_id"]) for m in ensemble.members)
    return tags


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
                                  cache_dir=settings.cache_dir, on_phase=on_phase, refit=settings.refit,
                                  refit_k=settings.refit_k)
    except Exception as exc:  # the search is done and recorded; registering can be retried by hand
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return ChampionReport("", tracker.location, skipped=f"registering failed ({message}); retry with "
                                                            f"`taml runs register {out}`")


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

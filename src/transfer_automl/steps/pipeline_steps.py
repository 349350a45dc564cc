"""The multitask search as stateless pipeline steps: what the Kubeflow components call.

`run_search` runs the whole loop in one process; here each part of a round is its own function,
and the state travels as files in a run directory (`search_dir`: a local path or an
`s3://bucket/prefix`; every file goes through the ArtifactStore, see `steps.search_dir`):

    search_dir/settings.json                 the SearchSettings of the search (init_search)
    search_dir/checkpoint.pt                 the search after the last told round (as run_search)
    search_dir/ledger/round-<k>.parquet      committed trials (as run_search)
    search_dir/rounds/<k>/trials.json        the trials asked in round k (controller_step)
    search_dir/rounds/<k>/results/<i>.json   one child's ledger row (train_child)

One round is `controller_step -> train_child (one per trial) -> aggregate_rewards`:

* `init_search` creates the search (scratch, resume or transfer) and writes checkpoint.pt at
  its current step; it returns that step, the round the pipeline starts at.
* `controller_step(k)` restores the checkpoint (step k), asks for the round's trials and writes
  them to trials.json. It never writes the checkpoint, so running it again gives the same trials.
* `train_child` trains (or looks up) one child; a result already on disk is returned as is.
* `aggregate_rewards(k)` is where the tell happens: it restores the checkpoint again, asks again
  (asking is deterministic given the checkpoint, so it gets the same trials, which it checks
  against trials.json; methods such as TPE keep per-ask state that no checkpoint holds, so the
  ask and the tell must happen on one object), commits the results to the ledger, tells the
  rewards in trial order and writes checkpoint.pt at step k + 1. Run again after that it only
  re-reads: nothing is told twice, and the ledger commit is idempotent per trial ids.

So init, then per round controller_step, train_child for each trial and aggregate_rewards,
gives the same ledger and checkpoint as `run_search` with `batch_size = children` and the same
seed, and `taml search --resume` can continue a search a pipeline started (and vice versa).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from transfer_automl.errors import ConfigError, StorageError
from transfer_automl.rewards.summary import TaskSummary, summarize
from transfer_automl.search import Ledger, Search, Trial, save_checkpoint
from transfer_automl.steps.search import (
    SearchSettings,
    _backend,
    _baseline_metrics,
    _initial_search,
    _mean,
    _resumable,
    _run_trial,
    restore_search,
)
from transfer_automl.steps.search_dir import SearchDir
from transfer_automl.tracking import Tracker

SETTINGS_NAME = "settings.json"
_TIME_FIELDS = ("started_at", "ended_at")  # ledger timestamps; ISO strings in the JSON results


def init_search(search_dir: str | Path, tasks: tuple[str, ...] | list[str] = (), method: str = "reinforce",
                space: str | None = None, seed: int = 0, *, children_per_round: int = 1,
                benchmark: str | None = None, table: str | None = None,
                metric_columns: tuple[str, ...] | list[str] = (), data_dir: str | None = None,
                budget_scale: float = 0.05, search_id: str | None = None, init_from: str = "scratch",
                source: str | None = None, reward_power: float = 1.0, controller_lr: float | None = None,
                normalization: str | None = None, top_n: int = 10) -> int:
    """Create (or continue) the search in `search_dir`; returns its step: the next round to run.

    init_from: scratch (a new search; run again with the same settings before any round was
    told it is a no-op, so a retried step does not fail), resume (continue this directory's
    checkpoint, which must have the same settings) or transfer (from `source`).
    """
    out = SearchDir.of(search_dir)
    settings = SearchSettings(
        tasks=tuple(tasks), trials=children_per_round, out=out.location, space=space, method=method,
        init_from=init_from, source=source, batch_size=children_per_round, seed=seed, controller_lr=controller_lr,
        normalization=normalization, reward_power=reward_power, budget_scale=budget_scale, benchmark=benchmark,
        table=table, metric_columns=tuple(metric_columns), data_dir=data_dir, search_id=search_id, top_n=top_n,
        progress=False,
    )
    settings.validate()
    if init_from == "scratch" and out.has_checkpoint() and _same_new_search(out, settings):
        return int(out.load_checkpoint()["step"])
    backend = _backend(settings, out)
    search = _initial_search(settings, backend.space, backend.task_names, out, out.checkpoint, out.ledger)
    if init_from != "resume":
        out.save_checkpoint(_payload(search, settings))
    _write_settings(out, settings, search.search_id)
    return search.step


def controller_step(search_dir: str | Path, round_index: int, children: int) -> list[dict[str, Any]]:
    """Ask the search for round `round_index`'s trials; the same trials every time it runs."""
    out = SearchDir.of(search_dir)
    settings = load_settings(out)
    if children != settings.batch_size:
        raise ConfigError(f"children: the search in {out} runs {settings.batch_size} children per round, not {children}")
    trials_key = _trials_key(round_index)
    search = _load_search(out)
    if search.step > round_index and out.store.exists(trials_key):  # round already told: replay
        return out.read_json(trials_key)
    _check_round(search, round_index, out)
    trials = [_trial_to_dict(t, search.search_id) for t in search.ask(children)]
    if out.store.exists(trials_key) and out.read_json(trials_key) != trials:
        raise ConfigError(f"{out.where(trials_key)} holds other trials than the checkpoint asks for; "
                          "was the checkpoint replaced?")
    out.write_json(trials_key, trials, indent=1)
    return trials


def train_child(search_dir: str | Path, trial: dict[str, Any]) -> dict[str, Any]:
    """Train (or look up) one child; returns its ledger row with ISO timestamps. Idempotent."""
    out = SearchDir.of(search_dir)
    result_key = f"{_round_prefix(int(trial['controller_step']))}/results/{int(trial['index']):03d}.json"
    if out.store.exists(result_key):
        return _checked_result(out, result_key, trial)
    settings = load_settings(out)
    backend = _backend(settings, out)
    row = _run_trial(backend, _trial_from_dict(trial), str(trial["search_id"]), settings.reward_power, settings.seed)
    row = {k: v.isoformat() if k in _TIME_FIELDS else v for k, v in row.items()}
    try:
        out.write_json(result_key, row, if_absent=True)  # a racing retry may have written it: keep the first
    except StorageError:
        if not out.store.exists(result_key):
            raise
        return _checked_result(out, result_key, trial)
    return row


def aggregate_rewards(search_dir: str | Path, round_index: int, results: list[dict[str, Any]],
                      tracker: Tracker | None = None) -> dict[str, Any]:
    """Commit round `round_index` to the ledger, tell the search, write the checkpoint.

    Returns {"next_round": k + 1, "metrics": {name: value}, "markdown": str}: the metrics are the
    controller update's, the round's mean reward per task, the per-task baselines and, over the
    whole ledger, reward/<task>/{best_val_accuracy, accuracy_top<N>, trials}.
    """
    out = SearchDir.of(search_dir)
    settings = load_settings(out)
    search = _load_search(out)
    trials_key = _trials_key(round_index)
    if not out.store.exists(trials_key):
        raise ConfigError(f"round {round_index}: {out.where(trials_key)} does not exist; run controller_step first")
    asked = out.read_json(trials_key)
    rows = _rows_in_trial_order(asked, results, round_index)
    ledger = out.ledger
    metrics: dict[str, float] = {}
    told = search.step == round_index
    if told:
        trials = search.ask(len(asked))
        if [_trial_to_dict(t, search.search_id) for t in trials] != asked:
            raise ConfigError(f"round {round_index}: the checkpoint in {out} no longer asks for the trials in "
                              f"{out.where(trials_key)}")
        ledger.append_round(round_index, rows)  # the ledger first, then the checkpoint (as run_search)
        metrics = search.tell(trials, [r["reward"] for r in rows])
        out.save_checkpoint(_payload(search, settings))
    elif search.step > round_index:
        ledger.append_round(round_index, rows)  # a rerun after the tell: a no-op, or the commit a crash lost
    else:
        _check_round(search, round_index, out)

    backend = _backend(settings, out)
    per_task = summarize(ledger.read().to_pylist(), backend.task_names, backend.references, settings.top_n)
    round_rewards = {f"reward/{task}/reward": _mean([r["reward"] for r in rows if r["task"] == task])
                     for task in sorted({r["task"] for r in rows})}
    summary = _summary_metrics(per_task, settings.top_n)
    all_metrics = {**metrics, **round_rewards, **_baseline_metrics(search), **summary}
    all_metrics = {k: float(v) for k, v in all_metrics.items() if math.isfinite(float(v))}
    if tracker is not None and told:
        _log(tracker, out, settings, search, rows, round_index, all_metrics, summary)
    return {"next_round": round_index + 1, "metrics": all_metrics,
            "markdown": summary_markdown(per_task, round_index, search.search_id, settings.top_n)}


def load_settings(search_dir: str | Path | SearchDir) -> SearchSettings:
    out = SearchDir.of(search_dir)
    if not out.store.exists(SETTINGS_NAME):
        raise ConfigError(f"search_dir: {out} holds no {SETTINGS_NAME}; run init_search first")
    raw = out.read_json(SETTINGS_NAME)
    known = {f.name for f in fields(SearchSettings)}
    values = {k: v for k, v in raw.items() if k in known}
    for key in ("tasks", "metric_columns"):
        values[key] = tuple(values.get(key, ()))
    return SearchSettings(**values)


def tracker_from_env() -> Tracker | None:
    """An MLflow tracker when MLFLOW_TRACKING_URI is set (the KFP MLflow integration), else None."""
    import os

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return None
    from transfer_automl.tracking.mlflow import MlflowTracker

    return MlflowTracker(uri)


def summary_markdown(per_task: list[TaskSummary], round_index: int, search_id: str, top_n: int) -> str:
    lines = [f"### Search `{search_id}` after round {round_index}", "",
             f"| task | trials | trained | best val | its test | accuracy-top{top_n} | reference |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for s in per_task:
        lines.append(f"| {s.task} | {s.trials} | {s.trained} | {_fmt(s.best_val_accuracy)} | "
                     f"{_fmt(s.best_test_accuracy)} | {_fmt(s.accuracy_top_n)} | "
                     f"{s.reference} {_fmt(s.reference_val)} / {_fmt(s.reference_test)} |")
    return "\n".join(lines) + "\n"


# -- helpers ------------------------------------------------------------------------------------

def _round_prefix(round_index: int) -> str:
    return f"rounds/{int(round_index):06d}"


def _trials_key(round_index: int) -> str:
    return f"{_round_prefix(round_index)}/trials.json"


def _checked_result(out: SearchDir, key: str, trial: dict[str, Any]) -> dict[str, Any]:
    row = out.read_json(key)
    if row["trial_id"] != trial["trial_id"]:
        raise ConfigError(f"{out.where(key)} holds trial {row['trial_id']!r}, not {trial['trial_id']!r}")
    return row


def _load_search(out: SearchDir) -> Search:
    return restore_search(out.load_checkpoint())


def _check_round(search: Search, round_index: int, out: SearchDir) -> None:
    if search.step != round_index:
        raise ConfigError(f"round_index: the search in {out} is at step {search.step}, not {round_index}; "
                          "the previous round has not been aggregated, or this round's trials were lost")


def _payload(search: Search, settings: SearchSettings) -> dict[str, Any]:
    return {**search.state_dict(), "search_settings": _resumable(settings)}


def _save(path: str | Path, search: Search, settings: SearchSettings) -> None:
    """Write the search's checkpoint to `path` (a local path or s3:// uri)."""
    save_checkpoint(path, _payload(search, settings))


def _write_settings(out: str | Path | SearchDir, settings: SearchSettings, search_id: str) -> None:
    body = {**asdict(settings), "search_id": search_id, "init_from": "resume", "source": None}
    SearchDir.of(out).write_json(SETTINGS_NAME, body, indent=1)


def _same_new_search(out: SearchDir, settings: SearchSettings) -> bool:
    """A retried init: settings.json there says the same (the search id may have been defaulted)."""
    if not out.store.exists(SETTINGS_NAME):
        return False
    saved = load_settings(out)
    same = _resumable(saved) == _resumable(settings) and saved.tasks == settings.tasks \
        and saved.metric_columns == settings.metric_columns
    return same and settings.search_id in (None, saved.search_id)


def _trial_to_dict(trial: Trial, search_id: str) -> dict[str, Any]:
    return {"trial_id": trial.trial_id, "search_id": search_id, "task": trial.task, "task_index": trial.task_index,
            "controller_step": trial.controller_step, "index": trial.index, "actions": list(trial.actions),
            "config": json.dumps(trial.config, sort_keys=True)}


def _trial_from_dict(d: dict[str, Any]) -> Trial:
    return Trial(trial_id=str(d["trial_id"]), index=int(d["index"]), task=str(d["task"]),
                 task_index=int(d["task_index"]), controller_step=int(d["controller_step"]),
                 actions=[int(a) for a in d["actions"]], config=json.loads(d["config"]))


def _rows_in_trial_order(asked: list[dict[str, Any]], results: list[dict[str, Any]],
                         round_index: int) -> list[dict[str, Any]]:
    by_id = {r["trial_id"]: r for r in results}
    expected = [t["trial_id"] for t in asked]
    if sorted(by_id) != sorted(expected) or len(results) != len(expected):
        missing, extra = sorted(set(expected) - set(by_id)), sorted(set(by_id) - set(expected))
        raise ConfigError(f"results: round {round_index} asked {len(expected)} trials, got {len(results)} results "
                          f"(missing {missing}, foreign {extra})")
    rows = []
    for trial_id in expected:
        row = dict(by_id[trial_id])
        for key in _TIME_FIELDS:
            if isinstance(row.get(key), str):
                row[key] = datetime.fromisoformat(row[key])
        rows.append(row)
    return rows


def _summary_metrics(per_task: list[TaskSummary], top_n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in per_task:
        out[f"reward/{s.task}/best_val_accuracy"] = s.best_val_accuracy
        out[f"reward/{s.task}/accuracy_top{top_n}"] = s.accuracy_top_n
        out[f"reward/{s.task}/trials"] = float(s.trials)
    return out


def _log(tracker: Tracker, out: SearchDir, settings: SearchSettings, search: Search, rows: list[dict[str, Any]], round_index: int,
         metrics: dict[str, float], summary: dict[str, float]) -> None:
    """Reopen the search's controller run (MLflow finds it by search id), log the round, close it."""
    params = {**{k: v for k, v in asdict(settings).items() if k != "progress"}, "tasks": ",".join(search.tasks)}
    tracker.start(search.search_id, params, {"taml.method": settings.method, "taml.runner": "kubeflow"})
    ledger_file = Ledger.round_name(round_index)
    for row in rows:
        tracker.log_trial({**row, "ledger_file": ledger_file}, json.loads(row["config"]))
    tracker.log_controller(round_index, metrics)
    tracker.finish({k: v for k, v in summary.items() if math.isfinite(v)})


def _fmt(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4f}"

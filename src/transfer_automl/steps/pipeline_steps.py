"""The multitask search as stateless pipeline steps: what the Kubeflow components call.

Each step is an adapter of a few lines over the `Study` (transfer_automl.study), the same code
`taml search` runs; the state travels as files in `search_dir` (a local path or an
`s3://bucket/prefix`, layout in study/search_dir.py). One round is

    round_packs(k) -> train_pack (one per pack of trials, one pack per GPU pod) -> aggregate_rewards(k)

= `Study.ask_round(k)`, `Study.run_trials(pack)`, `Study.tell_round(k, rows)`, each in its own
process, each idempotent: run again, it gives the same trials, returns the result already
written, or only makes sure the round is in the ledger. `finish_search` is `Study.finish()`:
summary, artifacts and champions. So init, rounds and finish give the same ledger, checkpoint,
MLflow runs and champions as `taml search` with `batch_size = children` and the same settings,
and either can continue a search the other started.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transfer_automl.errors import ConfigError, StorageError
from transfer_automl.rewards.summary import TaskSummary
from transfer_automl.study import SearchDir, Study
from transfer_automl.study.settings import check_pipeline_settings, require_data_dir
from transfer_automl.study.study import trial_from_record, trial_record
from transfer_automl.tasks.registry import is_samples


def init_search(search_dir: str | Path, settings: Mapping[str, Any], children_per_round: int, rounds: int,
                max_trials: int = 0) -> int:
    """Create (init_from scratch or transfer) or continue (resume) the search in `search_dir` with
    one settings mapping (SearchSettings' fields); returns the round the pipeline starts at.

    max_trials 0: the search's trials are `rounds` rounds of `children_per_round` more than where
    it starts (one run). max_trials > 0: the whole budget of a search that runs as a chain of
    windows of `rounds` rounds (`continue_search` submits the next); a window past the budget
    runs empty rounds."""
    if max_trials < 0:
        raise ConfigError(f"max_trials: must be >= 0 (0: this run's rounds only), got {max_trials}")
    given = check_pipeline_settings(settings)
    require_data_dir(given)
    if given.get("data_dir") and is_samples(given["data_dir"]):
        print(f"WARNING: settings.data_dir {given['data_dir']} holds the package's 1,000-row sample tasks, "
              "not a real data set", file=sys.stderr, flush=True)
    directory = SearchDir.of(search_dir)
    resuming = given.get("init_from") == "resume" and directory.has_checkpoint()  # else Study.open says why not
    start = int(directory.load_checkpoint()["step"]) if resuming else 0
    trials = max_trials if max_trials > 0 else (start + rounds) * children_per_round
    study = Study.open({**given, "out": directory.location, "batch_size": children_per_round,
                        "trials": trials, "progress": False}, directory)
    return study.search.step


def controller_step(search_dir: str | Path, round_index: int, children: int) -> list[dict[str, Any]]:
    """Round `round_index`'s trials; the same trials every time it runs."""
    study = Study.load(search_dir)
    if children != study.settings.batch_size:
        raise ConfigError(f"children: the search in {search_dir} runs {study.settings.batch_size} children per "
                          f"round, not {children}")
    return [trial_record(t, study.search.search_id) for t in study.ask_round(round_index)]


def round_packs(search_dir: str | Path, round_index: int, children: int, packs: int) -> list[dict[str, Any]]:
    """Round `round_index`'s trials split into `packs` packs (one per GPU pod), in trial order:
    [{"round_index": k, "pack_index": p, "trials": [trial record, ...]}]. Each item is a dict, so
    the pipeline's loop item is a STRUCT (pipelines/rounds.py). The same packs every time."""
    if packs < 1:
        raise ConfigError(f"packs: must be >= 1, got {packs}")
    if round_index >= Study.load(search_dir).rounds:  # a window past the budget: one empty pack, never an empty loop
        return [{"round_index": round_index, "pack_index": 0, "trials": []}]
    trials = controller_step(search_dir, round_index, children)
    per_pack = math.ceil(len(trials) / min(packs, len(trials)))
    return [{"round_index": round_index, "pack_index": p, "trials": trials[start : start + per_pack]}
            for p, start in enumerate(range(0, len(trials), per_pack))]


def train_child(search_dir: str | Path, trial: dict[str, Any]) -> dict[str, Any]:
    """Train (or look up) one child; returns its ledger row with ISO timestamps. Idempotent."""
    return Study.load(search_dir).run_trial(trial_from_record(trial)).to_json()


def train_pack(search_dir: str | Path, pack: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Train (or look up) a pack of children together on this pod's device (children/packing.py);
    returns their ledger rows in trial order. Idempotent: a child already run is not run again."""
    try:
        trials = [trial_from_record(t) for t in pack["trials"]]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"pack: not a pack of trials ({type(exc).__name__}: {exc}): {dict(pack)!r:.200}") from None
    if not trials:
        return []
    return [row.to_json() for row in Study.load(search_dir).run_trials(trials, pack=len(trials))]


def flatten_packs(results: list[Any]) -> list[dict[str, Any]]:
    """A round's collected results: rows, or the packs' lists of rows (dsl.Collected over packs)."""
    return [row for item in results for row in (item if isinstance(item, list) else [item])]


def aggregate_rewards(search_dir: str | Path, round_index: int, results: list[Any]) -> dict[str, Any]:
    """Commit round `round_index` to the ledger, tell the search, write the checkpoint, log it.
    `results`: the round's ledger rows, or its packs' lists of rows, in any order.

    Returns {"next_round": k + 1, "metrics": {name: value}, "markdown": str}: the metrics the
    tracker got for the round (none for a round told before) and a summary table."""
    study = Study.load(search_dir)
    rows = flatten_packs(results)
    if round_index >= study.rounds and not rows:  # past the budget: nothing to tell
        return {"next_round": round_index + 1, "metrics": {},
                "markdown": f"### Search `{study.search.search_id}`: round {round_index} is past its "
                            f"{study.settings.trials} trials; nothing ran\n"}
    report = study.tell_round(round_index, rows)
    return {"next_round": round_index + 1, "metrics": report.metrics,
            "markdown": summary_markdown(study.summaries(), round_index, study.search.search_id,
                                         study.settings.top_n)}


CONTINUATIONS = "continuations"  # continuations/<step>.json: who continued the search from <step>, and with which run


def continue_search(search_dir: str | Path, settings: Mapping[str, Any], max_trials: int, run_id: str,
                    submit: Any = None, passed_on: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """After a window's rounds: submit the next window (one more run of this run's pipeline
    version, `init_from=resume`) while the search has rounds left of `max_trials`.

    Idempotent: the step the search stands at names the window to come, and
    `continuations/<step>.json` (written if absent) records which run continues from it. A retried
    step finds its own record and submits at most once; a doubled window (two runs that reached
    the same step) finds the other's record and submits nothing. The rounds themselves never run
    twice whatever happens: the ledger and each trial's result file decide (`Study`).

    Returns {"status": "single-run" | "done" | "submitted" | "continued", "step", "next_run"}.
    `submit(run_id, parameters, step) -> next run id` defaults to kubeflow.continuation.submit_next.
    `passed_on`: more of this run's parameters the next window gets as they are (refit, refit_k)."""
    if max_trials <= 0:
        return {"status": "single-run", "step": None, "next_run": None}
    study = Study.load(search_dir)
    step, directory = study.search.step, study.directory
    if step >= study.rounds:
        return {"status": "done", "step": step, "next_run": None}
    key = f"{CONTINUATIONS}/{step:06d}.json"
    record = {"step": step, "by_run": run_id, "next_run": None}
    try:
        directory.write_json(key, record, if_absent=True)
    except StorageError:
        if not directory.store.exists(key):
            raise
        record = directory.read_json(key)
        if record.get("by_run") != run_id or record.get("next_run"):
            return {"status": "continued", "step": step, "next_run": record.get("next_run")}
    if submit is None:
        from transfer_automl.kubeflow.continuation import submit_next as submit
    parameters = {"search_dir": str(search_dir), "settings": {**dict(settings), "init_from": "resume"},
                  "max_trials": int(max_trials), **dict(passed_on or {})}
    next_run = submit(run_id, parameters, step)
    directory.write_json(key, {**record, "next_run": next_run, "parameters": parameters})
    return {"status": "submitted", "step": step, "next_run": next_run}


def finish_search(search_dir: str | Path, refit: str = "topk", refit_k: int = 3) -> dict[str, Any]:
    """`Study.finish()`: the run closed with its summary and files, each task's champion refit
    (study/refit.py: `refit` none, best, topk or ensemble, `refit_k` candidates per task; checked as
    SearchSettings checks them, before anything runs) and registered (alias `champion` only when
    better). {"tasks": {task: {...}}, "markdown": str}."""
    from dataclasses import replace

    from transfer_automl.study.refit import check_refit

    check_refit(refit, refit_k)
    study = Study.load(search_dir)
    study.settings = replace(study.settings, refit=refit, refit_k=int(refit_k))  # this run's, not stored
    result = study.finish()
    report = result.champions
    tasks = {} if report is None else {
        r.candidate.task: {"model": r.name, "version": str(r.version), "val_accuracy": r.candidate.val_accuracy,
                           "champion": r.champion, "alias_moved": r.alias_moved} for r in report.registered}
    lines = [] if report is None else [f"- {line.strip()}" for line in report.lines()]
    return {"tasks": tasks, "markdown": f"### Champions of search `{result.search_id}`\n\n" + "\n".join(lines) + "\n"}


def summary_markdown(per_task: list[TaskSummary], round_index: int, search_id: str, top_n: int) -> str:
    lines = [f"### Search `{search_id}` after round {round_index}", "",
             f"| task | trials | trained | best val | its test | accuracy-top{top_n} | reference |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for s in per_task:
        lines.append(f"| {s.task} | {s.trials} | {s.trained} | {_fmt(s.best_val_accuracy)} | "
                     f"{_fmt(s.best_test_accuracy)} | {_fmt(s.accuracy_top_n)} | "
                     f"{s.reference} {_fmt(s.reference_val)} / {_fmt(s.reference_test)} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4f}"

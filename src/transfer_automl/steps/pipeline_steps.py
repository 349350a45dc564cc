"""The multitask search as stateless pipeline steps: what the Kubeflow components call.

Each step is an adapter of a few lines over the `Study` (transfer_automl.study), the same code
`taml search` runs; the state travels as files in `search_dir` (a local path or an
`s3://bucket/prefix`, layout in study/search_dir.py). One round is

    controller_step(k) -> train_child (one per trial) -> aggregate_rewards(k)

= `Study.ask_round(k)`, `Study.run_trial(trial)`, `Study.tell_round(k, rows)`, each in its own
process, each idempotent: run again, it gives the same trials, returns the result already
written, or only makes sure the round is in the ledger. `finish_search` is `Study.finish()`:
summary, artifacts and champions. So init, rounds and finish give the same ledger, checkpoint,
MLflow runs and champions as `taml search` with `batch_size = children` and the same settings,
and either can continue a search the other started.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transfer_automl.errors import ConfigError
from transfer_automl.rewards.summary import TaskSummary
from transfer_automl.study import SearchDir, Study
from transfer_automl.study.settings import check_pipeline_settings
from transfer_automl.study.study import trial_from_record, trial_record


def init_search(search_dir: str | Path, settings: Mapping[str, Any], children_per_round: int, rounds: int) -> int:
    """Create (init_from scratch or transfer) or continue (resume) the search in `search_dir` with
    one settings mapping (SearchSettings' fields); returns the round the pipeline starts at. Its
    trials are `rounds` rounds of `children_per_round` more than where it starts."""
    given = check_pipeline_settings(settings)
    directory = SearchDir.of(search_dir)
    resuming = given.get("init_from") == "resume" and directory.has_checkpoint()  # else Study.open says why not
    start = int(directory.load_checkpoint()["step"]) if resuming else 0
    study = Study.open({**given, "out": directory.location, "batch_size": children_per_round,
                        "trials": (start + rounds) * children_per_round, "progress": False}, directory)
    return study.search.step


def controller_step(search_dir: str | Path, round_index: int, children: int) -> list[dict[str, Any]]:
    """Round `round_index`'s trials; the same trials every time it runs."""
    study = Study.load(search_dir)
    if children != study.settings.batch_size:
        raise ConfigError(f"children: the search in {search_dir} runs {study.settings.batch_size} children per "
                          f"round, not {children}")
    return [trial_record(t, study.search.search_id) for t in study.ask_round(round_index)]


def train_child(search_dir: str | Path, trial: dict[str, Any]) -> dict[str, Any]:
    """Train (or look up) one child; returns its ledger row with ISO timestamps. Idempotent."""
    return Study.load(search_dir).run_trial(trial_from_record(trial)).to_json()


def aggregate_rewards(search_dir: str | Path, round_index: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Commit round `round_index` to the ledger, tell the search, write the checkpoint, log it.

    Returns {"next_round": k + 1, "metrics": {name: value}, "markdown": str}: the metrics the
    tracker got for the round (none for a round told before) and a summary table."""
    study = Study.load(search_dir)
    report = study.tell_round(round_index, results)
    return {"next_round": round_index + 1, "metrics": report.metrics,
            "markdown": summary_markdown(study.summaries(), round_index, study.search.search_id,
                                         study.settings.top_n)}


def finish_search(search_dir: str | Path) -> dict[str, Any]:
    """`Study.finish()`: the run closed with its summary and files, each task's best child
    registered (alias `champion` only when better). {"tasks": {task: {...}}, "markdown": str}."""
    result = Study.load(search_dir).finish()
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

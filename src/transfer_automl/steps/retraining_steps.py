"""Scheduled retraining as pipeline steps: continue the newest search for a set of tasks, then
offer its best children to the MLflow Model Registry. What `resume_search` and
`register_champion` (components/) call.

A recurring run (`taml pipeline schedule scheduled_retraining --cron ...`) points at one search
(a local directory or s3:// prefix), or at a directory of searches; `resume_search` picks the
newest one whose tasks are the given set (the one with the latest finished trial in its ledger),
checks that it runs the pipeline's children per round, and returns it with the round to continue
at. The rounds that follow are the multitask search's (controller_step, train_pack,
aggregate_rewards), so a run adds rounds to the ledger and checkpoint and a retried run never
counts a trial twice. `register_champion` then registers each task's best child; the alias
`champion` moves only to a strictly better model (transfer_automl.study.champions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transfer_automl.errors import ConfigError
from transfer_automl.steps.pipeline_steps import finish_search, init_search
from transfer_automl.storage import get_store
from transfer_automl.study import SearchDir, stored_settings
from transfer_automl.study.search_dir import CHECKPOINT_NAME, SETTINGS_NAME


def newest_search(search_root: str | Path, tasks: tuple[str, ...] | list[str] = ()) -> SearchDir:
    """`search_root` itself when it holds a pipeline search, else the newest pipeline search
    directly under it whose tasks are `tasks` (any tasks when none are given)."""
    root = SearchDir.of(search_root)
    if root.store.exists(SETTINGS_NAME):
        candidates = [root]
    else:
        store = get_store(str(search_root))
        names = sorted({k.split("/")[0] for k in store.list() if k.count("/") == 1 and k.endswith("/" + SETTINGS_NAME)})
        candidates = [SearchDir(store.join(n)) for n in names]
        candidates = [c for c in candidates if c.has_checkpoint()]
    wanted = set(tasks)
    matching = [c for c in candidates if not wanted or set(stored_settings(c).tasks) == wanted]
    if not matching:
        what = f"for tasks {sorted(wanted)}" if wanted else "at all"
        raise ConfigError(f"search_root: {search_root} holds no pipeline search {what} (a directory with "
                          f"{SETTINGS_NAME} and {CHECKPOINT_NAME})")
    return max(matching, key=lambda c: (_last_trial_end(c), c.location))


def resume_search(search_root: str | Path, tasks: tuple[str, ...] | list[str], children_per_round: int,
                  rounds: int) -> tuple[str, int]:
    """(the search continued, the round to continue at): the newest search for `tasks`, resumed
    with the settings it was started with, `rounds` rounds longer."""
    search = newest_search(search_root, tasks)
    saved = stored_settings(search)
    if saved.batch_size != children_per_round:
        raise ConfigError(f"children_per_round: the search in {search} runs {saved.batch_size} children per round, "
                          f"not {children_per_round}; compile the pipeline with --children {saved.batch_size}")
    return search.location, init_search(search, {"init_from": "resume"}, children_per_round, rounds)


def register_champion(search_dir: str | Path, refit: str = "topk", refit_k: int = 3) -> dict[str, Any]:
    """The search's end (`Study.finish`, its champions refit as `refit`/`refit_k` say:
    study/refit.py): {"tasks": {task: {model, version, val_accuracy, champion, alias_moved}},
    "markdown": summary}. MLflow: MLFLOW_TRACKING_URI (the KFP MLflow integration sets it), else
    the search's own store. A search whose children are looked up in a table has no model:
    nothing is registered, and the summary says why."""
    return finish_search(search_dir, refit, refit_k)


def _last_trial_end(search: SearchDir) -> str:
    """When the search's newest committed trial ended ("" for a search with no trial yet)."""
    files = search.ledger.files()
    if not files:
        return ""
    table = search.ledger.store.read_parquet(str(files[-1]).rsplit("/", 1)[-1], columns=["ended_at"])
    ends = [t for t in table.column("ended_at").to_pylist() if t is not None]
    return max(ends).isoformat() if ends else ""

"""`run_search`: a multitask search end to end on one machine, with any registered method.

Per round: ask the search for `batch_size` trials (a task drawn uniformly for each), train (or
look up) each child, commit the round to the ledger, update the controller with the rewards, write the
checkpoint, then report to the tracker. The ledger is committed before the checkpoint, and a
round already in the ledger is replayed from it rather than retrained, so a search stopped at
any point continues with `resume=True` without losing or doubling a trial.

The MLflow tracker is wrapped in `ResilientTracker`: an unreachable server costs a warning, never
a trial. `sync_runs` (`taml runs sync`) replays ledger rows missing from MLflow afterwards.

`out` is a local directory or an `s3://bucket/prefix` (`steps.search_dir.SearchDir`): ledger,
checkpoint, space and feature cache go through the ArtifactStore; the default MLflow store is
`<out>/mlflow.db` locally and, for S3, `mlflow.db` in a local working directory (printed), unless
MLFLOW_TRACKING_URI is set.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transfer_automl.algorithms import UPDATE_RULES
from transfer_automl.algorithms.baselines import NORMALIZATIONS
from transfer_automl.errors import CheckpointError, ConfigError, TamlError
from transfer_automl.rewards import reward_from_accuracy
from transfer_automl.rewards.summary import TaskHistory, TaskSummary, summarize
from transfer_automl.search import (
    SEARCHES,
    ControllerSearch,
    Ledger,
    Search,
    Trial,
    load_checkpoint,
    make_search,
)
from transfer_automl.space import SearchSpace, save_space, space_from_dict
from transfer_automl.steps.backends import Backend, table_backend, text_backend
from transfer_automl.steps.search_dir import CHECKPOINT_NAME, SearchDir
from transfer_automl.storage import is_remote
from transfer_automl.tracking import Tracker
from transfer_automl.trial_status import STATUS_OK

__all__ = ["CHECKPOINT_NAME", "SearchResult", "SearchSettings", "SyncResult", "restore_search", "run_search",
           "sync_runs"]


@dataclass(frozen=True)
class SearchSettings:
    """Everything one `taml search` does; logged whole as the controller run's params."""

    tasks: tuple[str, ...]  # task names (text: resolved in data_dir, or .parquet paths; table: metric columns)
    trials: int  # total child trials across all tasks
    out: str  # run directory or s3://bucket/prefix: ledger/, checkpoint.pt, space.yaml, cache/ (+ mlflow.db locally)
    space: str | None = None  # built-in space name or a .yaml/.json file (text default: taml-text)
    method: str = "reinforce"  # any registered search: reinforce, ppo, pqt, transformer, rs, re, tpe
    init_from: str = "scratch"  # scratch | resume (this --out) | transfer (from `source`)
    source: str | None = None  # for init_from=transfer: a search directory or a checkpoint file
    batch_size: int = 1  # trials per controller update (T-AML: 1)
    seed: int = 0
    controller_lr: float | None = None  # None: the update rule's paper default (REINFORCE 1e-4)
    normalization: str | None = None  # "std": (R-b)/sigma (T-AML); "baseline": (R-b)/b (MNMS)
    baseline_decay: float | None = None
    entropy_weight: float | None = None  # None: the rule's default (0 for REINFORCE, 0.15 for PQT)
    mixing_gamma: float = 0.1  # init_from=transfer: uniform mixing, decaying linearly to 0 ...
    mixing_samples: int = 100  # ... over this many samples
    reward_power: float = 1.0  # 1: accuracy (T-AML); 3: cubed accuracy (MNMS)
    budget_scale: float = 0.05  # text children: multiplies the space's training budgets (1.0 = the papers')
    benchmark: str | None = None  # tabular children: transnasbench101-micro | nasbench201
    table: str | None = None  # tabular children from the user's own Parquet/CSV table ...
    metric_columns: tuple[str, ...] = ()  # ... with one metric column per task
    trial_timeout: float | None = None  # text children: seconds before a trial is stopped (status timeout)
    data_dir: str | None = None  # where task names (or benchmark tables) resolve
    cache_dir: str | None = None  # frozen-feature cache (a path or s3://); default <out>/cache/features
    search_id: str | None = None  # default: <out dir name>-<UTC time>
    top_n: int = 10  # accuracy-topN reported per task
    progress: bool = True

    @property
    def tabular(self) -> bool:
        return bool(self.benchmark or self.table)

    def validate(self) -> None:
        from transfer_automl.search import SEARCHES

        duplicates = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        if duplicates:
            raise ConfigError(f"tasks: {duplicates} listed more than once")
        if not self.tasks and not self.tabular:
            raise ConfigError("tasks: give at least one task")
        if self.method not in SEARCHES:
            raise ConfigError(f"method: unknown {self.method!r}; available: {sorted(SEARCHES)}")
        if self.init_from not in ("scratch", "resume", "transfer"):
            raise ConfigError(f"init_from must be scratch, resume or transfer, got {self.init_from!r}")
        if (self.init_from == "transfer") != bool(self.source):
            raise ConfigError("init_from=transfer needs --from (a search directory or checkpoint), and --from needs it")
        if self.benchmark and self.table:
            raise ConfigError("--benchmark and --table are alternatives; give one")
        if self.table and not self.metric_columns:
            raise ConfigError("--table needs --metric-columns (one metric column per task)")
        for name, value in (("trials", self.trials), ("batch_size", self.batch_size), ("top_n", self.top_n)):
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        for name, value in (("controller_lr", self.controller_lr), ("reward_power", self.reward_power),
                            ("budget_scale", self.budget_scale), ("trial_timeout", self.trial_timeout)):
            if value is not None and (not value > 0 or math.isinf(value)):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        if self.normalization is not None and self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"normalization must be one of {list(NORMALIZATIONS)}, got {self.normalization!r}")
        if self.baseline_decay is not None and not 0 <= self.baseline_decay < 1:
            raise ConfigError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")


@dataclass
class SearchResult:
    search_id: str
    method: str
    out: Path | str  # a Path for a local search, the uri for S3
    data_location: str
    ledger_dir: Path | str
    checkpoint: Path | str
    tracking_location: str
    trials_run: int  # trials trained in this invocation (replayed ones excluded)
    per_task: list[TaskSummary]
    wall_s: float
    champions: Any = None  # tracking.champion.ChampionReport: each task's best child in the MLflow registry


def run_search(settings: SearchSettings, tracker: Tracker | None = None) -> SearchResult:
    settings.validate()
    started = time.perf_counter()
    out = SearchDir.of(settings.out)
    backend = _backend(settings, out)
    space, task_names = backend.space, backend.task_names
    ledger = out.ledger
    search = _initial_search(settings, space, task_names, out, out.checkpoint, ledger)
    history = TaskHistory(ledger.read().to_pylist())  # also refuses a damaged ledger before anything is written
    if settings.init_from != "resume":  # from here on the search can always be resumed
        out.save_checkpoint({**search.state_dict(), "search_settings": _resumable(settings)})

    own_tracker = tracker is None  # ours is MLflow, where the best children get registered at the end
    if tracker is None:
        tracker = _default_tracker(out)
    params = {**{k: v for k, v in asdict(settings).items() if k != "progress"},
              "tasks": ",".join(task_names), "space_fingerprint": space.fingerprint(),
              "child_trainer": backend.trainer_settings, "search_state": _describe(search)}
    tracker.start(search.search_id, params, {"taml.space": space.name, "taml.method": settings.method})
    _write_space(out, space)  # the exact space searched, beside its ledger

    rounds = math.ceil(settings.trials / settings.batch_size)
    trials_run = 0
    progress = _progress(rounds * settings.batch_size, search.step * settings.batch_size, settings.progress)
    try:
        while search.step < rounds:
            step = search.step
            n = min(settings.batch_size, settings.trials - step * settings.batch_size)
            trials = search.ask(n)
            committed = ledger.read_round(step)
            if committed is not None and [r["trial_id"] for r in committed] == [t.trial_id for t in trials]:
                rows = committed  # crashed after the ledger commit: replay, never retrain
                for row in rows:  # ... and make sure the tracker has them (it skips what it has)
                    tracker.log_trial({**row, "ledger_file": ledger.round_name(step)}, json.loads(row["config"]))
            else:
                rows = [_run_trial(backend, t, search.search_id, settings.reward_power, settings.seed) for t in trials]
                trials_run += len(rows)
                ledger.append_round(step, rows)
                history.add(rows)
                for row, trial in zip(rows, trials, strict=True):
                    tracker.log_trial({**row, "ledger_file": ledger.round_name(step)}, trial.config)
            metrics = search.tell(trials, [r["reward"] for r in rows])
            out.save_checkpoint({**search.state_dict(), "search_settings": _resumable(settings)})
            round_rewards = {f"reward/{task}/reward": _mean([r["reward"] for r in rows if r["task"] == task])
                             for task in {r["task"] for r in rows}}
            task_metrics = {k: v for task in task_names for k, v in history.metrics(task, settings.top_n).items()}
            tracker.log_controller(step, {**metrics, **round_rewards, **_baseline_metrics(search), **task_metrics})
            progress.update(len(rows))
            best = max((r["val_accuracy"] for r in rows), default=0.0)
            progress.set_postfix_str(f"step {step} {rows[-1]['task']} val {best:.3f}")
    except BaseException:
        tracker.finish({}, status="KILLED")
        raise
    finally:
        progress.close()

    per_task = summarize(ledger.read().to_pylist(), task_names, backend.references, settings.top_n)
    tracker.log_artifact(out.local_copy(CHECKPOINT_NAME))
    tracker.log_artifact(out.local_copy(SPACE_NAME))
    tracker.finish({f"reward/{s.task}/best_val_accuracy": s.best_val_accuracy for s in per_task}
                   | {f"reward/{s.task}/accuracy_top{settings.top_n}": s.accuracy_top_n for s in per_task})
    return SearchResult(search.search_id, settings.method, out.store.root if out.is_local else out.store.uri,
                        backend.data_location, ledger.root, out.checkpoint, tracker.location, trials_run, per_task,
                        time.perf_counter() - started, _champions(settings, out, tracker) if own_tracker else None)


def _champions(settings: SearchSettings, out: SearchDir, tracker: Tracker):
    from transfer_automl.tracking.champion import register_after_search

    return register_after_search(settings, out, tracker)


SPACE_NAME = "space.yaml"


def _default_tracker(out: SearchDir) -> Tracker:
    """MLflow at MLFLOW_TRACKING_URI, else sqlite in the search's local working directory."""
    from transfer_automl.tracking.mlflow import MlflowTracker
    from transfer_automl.tracking.resilient import ResilientTracker

    return ResilientTracker.from_env(
        MlflowTracker(out.default_tracking_uri(), artifact_root=_artifact_root(out, None)),
        hint=f"replay the missing runs with `taml runs sync {out}`",
    )


def _artifact_root(out: SearchDir, tracking_uri: str | None) -> Path | None:
    """Where MLflow stores artifacts: beside the default sqlite store; for an S3 search tracked by
    a server (MLFLOW_TRACKING_URI or --tracking-uri), the server's own default."""
    if not out.is_local and (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        return None
    work = out.work_dir()
    work.mkdir(parents=True, exist_ok=True)
    return work / "mlartifacts"


def _write_space(out: SearchDir, space: SearchSpace) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="taml-space-") as tmp:
        local = Path(tmp) / SPACE_NAME
        save_space(space, local)
        out.store.put_file(SPACE_NAME, local)  # atomic in every store


@dataclass
class SyncResult:
    search_id: str
    tracking_location: str
    new: int  # ledger rows logged now
    present: int  # ledger rows MLflow already had


def sync_runs(out: str | Path, tracking_uri: str | None = None) -> SyncResult:
    """Log every ledger row of the search in `out` that MLflow lacks; idempotent (a second call logs
    none). The URI: `tracking_uri`, else MLFLOW_TRACKING_URI, else the search's own mlflow.db
    (for an s3:// search, the one in its local working directory)."""
    from transfer_automl.tracking.mlflow import MlflowTracker

    out = SearchDir.of(out)
    if not out.has_checkpoint():
        raise ConfigError(f"runs sync: {out} holds no search ({out.checkpoint} not found)")
    body = out.load_checkpoint()
    search_id = str(body["search_id"])
    ledger = out.ledger
    rounds = ledger.rounds()
    ledger.read()  # refuses a damaged or foreign ledger before anything is logged
    tracker = MlflowTracker(out.default_tracking_uri(), artifact_root=_artifact_root(out, tracking_uri), uri=tracking_uri)
    new = present = 0
    try:
        tracker.start(search_id, {**dict(body.get("search_settings", {})), "synced_from": str(out.store.uri)},
                      {"taml.synced": "true"})
        for ledger_file, rows in rounds:
            for row in rows:
                if tracker.has_trial(row["trial_id"]):
                    present += 1
                    continue
                tracker.log_trial({**row, "ledger_file": ledger_file}, json.loads(row["config"]))
                new += 1
        tracker.finish({}, status=tracker.previous_status or "FINISHED")
    except Exception as exc:
        raise TamlError(f"runs sync: tracker {tracker.location} failed after {new} new runs: "
                            f"{type(exc).__name__}: {exc}") from None
    return SyncResult(search_id, tracker.location, new, present)


def _backend(settings: SearchSettings, out: str | Path | SearchDir) -> Backend:
    if settings.tabular:
        return table_backend(settings.tasks, settings.benchmark, settings.table, settings.metric_columns,
                             settings.space, settings.data_dir)
    out = SearchDir.of(out)
    return text_backend(settings.tasks, settings.space or "taml-text", settings.data_dir,
                        settings.cache_dir or out.store.sub("cache/features"), settings.budget_scale,
                        timeout_s=settings.trial_timeout)


def _initial_search(settings: SearchSettings, space: SearchSpace, task_names: list[str], out: str | Path | SearchDir,
                    ckpt_path: Path | str, ledger: Ledger) -> Search:
    """init_from: scratch (a new search), resume (this directory's checkpoint) or transfer."""
    out = SearchDir.of(out)
    if settings.init_from == "resume":
        body = out.load_checkpoint(space, task_names)
        _check_same_search(settings, body.get("search_settings", {}), ckpt_path)
        if body.get("name") != settings.method:
            raise ConfigError(f"--resume: the search in {ckpt_path} uses method {body.get('name')!r}, not {settings.method!r}")
        return restore_search(body)
    if out.has_checkpoint() or ledger.files():
        raise ConfigError(f"out: {out} already holds a search; pass --resume to continue it or choose another --out")
    search_id = settings.search_id or f"{out.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    search_cls = SEARCHES[settings.method]
    if not issubclass(search_cls, ControllerSearch):
        if settings.init_from == "transfer":
            raise ConfigError(f"init_from=transfer needs a controller search, not {settings.method!r}")
        return make_search(settings.method, space, task_names, search_id, seed=settings.seed)
    update_config = _update_config(search_cls.update_rule_name, settings)
    if settings.init_from == "transfer":
        source = settings.source
        body = load_checkpoint(_source_checkpoint(source), space)
        if body.get("name") != settings.method:
            raise ConfigError(f"--from {source} holds a {body.get('name')!r} search; transfer with --method {body.get('name')}")
        return ControllerSearch.transfer_from(
            body, task_names, search_id, seed=settings.seed, mixing_gamma=settings.mixing_gamma,
            mixing_samples=settings.mixing_samples, update_config={**dict(body["update_config"]), **update_config},
        )
    return make_search(settings.method, space, task_names, search_id, seed=settings.seed, update_config=update_config)


def _source_checkpoint(source: str) -> str | Path:
    """--from: a search directory (local or s3://) or a checkpoint file in one."""
    if is_remote(source):
        return source if source.endswith(".pt") else SearchDir.of(source).checkpoint
    path = Path(source)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def _update_config(rule_name: str, settings: SearchSettings) -> dict[str, Any]:
    """The settings the user gave that the rule has; the rule's defaults for the rest."""
    given = {"learning_rate": settings.controller_lr, "normalization": settings.normalization,
             "baseline_decay": settings.baseline_decay, "entropy_weight": settings.entropy_weight}
    config_cls = UPDATE_RULES[rule_name].config_class
    known = {f.name for f in fields(config_cls)}
    return {k: v for k, v in given.items() if v is not None and k in known}


def restore_search(body: dict[str, Any]) -> Search:
    """Rebuild any registered search from its checkpoint body."""
    name = body.get("name")
    if name not in SEARCHES:
        raise CheckpointError(f"checkpoint is for search method {name!r}, which this taml does not have ({sorted(SEARCHES)})")
    search_cls = SEARCHES[name]
    if issubclass(search_cls, ControllerSearch):
        return ControllerSearch.from_checkpoint(body)
    search = make_search(name, space_from_dict(body["space"], source="checkpoint"), list(body["tasks"]),
                         str(body["search_id"]), **dict(body.get("settings", {})))
    search.load_state_dict(body)
    return search


def _describe(search: Search) -> dict[str, Any]:
    if isinstance(search, ControllerSearch):
        return {"controller": search.controller.kind, "controller_config": search.controller.config.to_dict(),
                "update_rule": search.update_rule.name, "update_config": search.update_rule.config.to_dict()}
    return {"method": search.name}


# Settings that shape the search itself: a resumed search must use the same values. `trials` may
# grow (a longer search), and where data, caches and progress bars live may change.
_MUST_MATCH_ON_RESUME = ("space", "method", "batch_size", "seed", "controller_lr", "normalization", "baseline_decay",
                         "entropy_weight", "reward_power", "budget_scale", "top_n", "benchmark")


def _resumable(settings: SearchSettings) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in _MUST_MATCH_ON_RESUME}


def _check_same_search(settings: SearchSettings, saved: dict[str, Any], path: Path | str) -> None:
    for key, value in _resumable(settings).items():
        if key in saved and saved[key] != value:
            raise ConfigError(f"--resume: {key} is {value!r} but the search in {path} ran with {saved[key]!r}; "
                              "resume with the same settings")


def _run_trial(backend: Backend, trial: Trial, search_id: str, reward_power: float, seed: int) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    result = backend.trainer.train(trial.config, backend.task_objects[trial.task],
                                   seed=trial_seed(seed, trial.controller_step, trial.index))
    ended_at = datetime.now(UTC)
    return {
        "trial_id": trial.trial_id, "search_id": search_id, "task": trial.task,
        "controller_step": trial.controller_step, "config": json.dumps(trial.config, sort_keys=True),
        "reward": reward_from_accuracy(result.val_accuracy, reward_power) if result.status == STATUS_OK else 0.0,
        "val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy,
        "status": result.status, "error": result.error,
        "started_at": started_at, "ended_at": ended_at, "duration_s": result.duration_s,
    }


def trial_seed(search_seed: int, controller_step: int, index: int) -> int:
    """The child's seed: a child retrained with it reproduces its ledger row (tracking/champion.py)."""
    return search_seed * 1_000_003 + controller_step * 1000 + index


def _baseline_metrics(search: Search) -> dict[str, float]:
    """reward/<task>/{baseline, std, trials}: the per-task normalization after a step."""
    b = getattr(getattr(search, "update_rule", None), "baselines", None)
    if b is None:  # random search, evolution, TPE keep no baselines
        return {}
    out: dict[str, float] = {}
    for i, task in enumerate(search.tasks):
        out[f"reward/{task}/baseline"] = b.mean[i]
        out[f"reward/{task}/std"] = b.std(i)
        out[f"reward/{task}/trials"] = b.count[i]
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _progress(total: int, initial: int, enabled: bool):
    from transfer_automl.console import Progress

    return Progress(total=total, initial=initial, enabled=enabled, unit="trial", description="search")

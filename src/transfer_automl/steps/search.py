"""`run_search`: the multitask search end to end on one machine.

Per round: ask the controller for `batch_size` trials (a task drawn uniformly for each), train
each child, commit the round to the ledger, update the controller with the rewards, write the
checkpoint, then report to the tracker. The ledger is committed before the checkpoint, and a
round already in the ledger is replayed from it rather than retrained, so a search stopped at
any point continues with `resume=True` without losing or doubling a trial.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transfer_automl.algorithms import ReinforceConfig
from transfer_automl.algorithms.baselines import NORMALIZATIONS
from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
from transfer_automl.errors import ConfigError
from transfer_automl.rewards import reward_from_accuracy
from transfer_automl.rewards.summary import TaskHistory, TaskSummary, summarize
from transfer_automl.search import Ledger, MultitaskSearch, load_checkpoint, save_checkpoint
from transfer_automl.space import get_space, save_space
from transfer_automl.storage import atomic_write
from transfer_automl.tasks import data_dir, load_task
from transfer_automl.tasks.features import FeatureCache
from transfer_automl.tracking import Tracker
from transfer_automl.trial_status import STATUS_OK

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class SearchSettings:
    """Everything one `taml search` does; logged whole as the controller run's params."""

    tasks: tuple[str, ...]  # task names (resolved in data_dir) or .parquet paths
    trials: int  # total child trials across all tasks
    out: str  # run directory: ledger/, checkpoint.pt, mlflow.db, cache/
    space: str = "taml-text"  # built-in space name or a .yaml/.json file
    batch_size: int = 1  # trials per controller update (T-AML: 1)
    seed: int = 0
    controller_lr: float = 1e-4  # T-AML: 1e-4
    normalization: str = "std"  # "std": (R-b)/sigma (T-AML); "baseline": (R-b)/b (MNMS)
    baseline_decay: float = 0.95
    entropy_weight: float = 0.0
    reward_power: float = 1.0  # 1: accuracy (T-AML); 3: cubed accuracy (MNMS)
    budget_scale: float = 0.05  # multiplies the space's training budgets (1.0 = the papers')
    data_dir: str | None = None  # where task names resolve; default $TAML_DATA_DIR or ../shared/data/text
    cache_dir: str | None = None  # frozen-feature cache; default <out>/cache/features
    search_id: str | None = None  # default: <out dir name>-<UTC time>
    resume: bool = False  # continue the search in `out` from its checkpoint
    top_n: int = 10  # accuracy-topN reported per task
    progress: bool = True

    def validate(self) -> None:
        if not self.tasks:
            raise ConfigError("tasks: give at least one task")
        duplicates = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        if duplicates:
            raise ConfigError(f"tasks: {duplicates} listed more than once")
        for name, value in (("trials", self.trials), ("batch_size", self.batch_size), ("top_n", self.top_n)):
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        for name, value in (("controller_lr", self.controller_lr), ("reward_power", self.reward_power),
                            ("budget_scale", self.budget_scale)):
            if not value > 0 or math.isinf(value):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"normalization must be one of {list(NORMALIZATIONS)}, got {self.normalization!r}")
        if not 0 <= self.baseline_decay < 1:
            raise ConfigError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")


@dataclass
class SearchResult:
    search_id: str
    out: Path
    data_dir: Path
    ledger_dir: Path
    checkpoint: Path
    tracking_location: str
    trials_run: int  # trials trained in this invocation (replayed ones excluded)
    per_task: list[TaskSummary]
    wall_s: float


def run_search(settings: SearchSettings, tracker: Tracker | None = None) -> SearchResult:
    settings.validate()
    started = time.perf_counter()
    out = Path(settings.out)
    space = get_space(settings.space)
    tasks = {name: load_task(name, settings.data_dir) for name in settings.tasks}
    task_names = [t.name for t in tasks.values()]
    by_name = {t.name: t for t in tasks.values()}
    ckpt_path = out / CHECKPOINT_NAME
    ledger = Ledger(out / "ledger")

    if settings.resume:
        body = load_checkpoint(ckpt_path, space, task_names)
        _check_same_search(settings, body.get("search_settings", {}), ckpt_path)
        search = MultitaskSearch.from_checkpoint(body)
    else:
        if ckpt_path.exists() or ledger.files():
            raise ConfigError(f"out: {out} already holds a search; pass --resume to continue it or choose another --out")
        search_id = settings.search_id or f"{out.resolve().name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        search = MultitaskSearch(
            space, task_names, search_id, seed=settings.seed,
            update_config=ReinforceConfig(
                learning_rate=settings.controller_lr, normalization=settings.normalization,
                baseline_decay=settings.baseline_decay, entropy_weight=settings.entropy_weight,
            ).to_dict(),
        )
    trainer_config = ChildTrainerConfig(budget_scale=settings.budget_scale)
    trainer = TextChildTrainer(trainer_config, FeatureCache(settings.cache_dir or out / "cache" / "features"))
    if tracker is None:
        from transfer_automl.tracking.mlflow import MlflowTracker

        out.mkdir(parents=True, exist_ok=True)
        tracker = MlflowTracker(f"sqlite:///{(out / 'mlflow.db').resolve()}", artifact_root=out / "mlartifacts")
    params = {**{k: v for k, v in asdict(settings).items() if k not in {"progress", "resume"}},
              "tasks": ",".join(task_names), "space_fingerprint": space.fingerprint(),
              "child_trainer": trainer_config.to_dict(), "controller": search.controller.config.to_dict()}
    tracker.start(search.search_id, params, {"taml.space": space.name})
    space_path = out / "space.yaml"  # the exact space searched, beside its ledger
    atomic_write(space_path, lambda tmp: save_space(space, tmp))

    history = TaskHistory(ledger.read().to_pylist())
    rounds = math.ceil(settings.trials / settings.batch_size)
    trials_run = 0
    progress = _progress(rounds * settings.batch_size, search.step * settings.batch_size, settings.progress)
    try:
        while search.step < rounds:
            step = search.step
            n = min(settings.batch_size, settings.trials - step * settings.batch_size)
            trials = search.ask(n)
            committed = _committed_round(ledger, step)
            if committed is not None and [r["trial_id"] for r in committed] == [t.trial_id for t in trials]:
                rows = committed  # crashed after the ledger commit: replay, never retrain
            else:
                rows = [_run_trial(trainer, t, by_name[t.task], search.search_id, settings.reward_power, settings.seed)
                        for t in trials]
                trials_run += len(rows)
                ledger_file = ledger.append_round(step, rows)
                history.add(rows)
                for row, trial in zip(rows, trials, strict=True):
                    tracker.log_trial({**row, "ledger_file": ledger_file.name}, trial.config)
            metrics = search.tell(trials, [r["reward"] for r in rows])
            save_checkpoint(ckpt_path, {**search.checkpoint_payload(), "search_settings": _resumable(settings)})
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

    per_task = summarize(ledger.read().to_pylist(), tasks.values(), settings.top_n)
    tracker.log_artifact(ckpt_path)
    tracker.log_artifact(space_path)
    tracker.finish({f"reward/{s.task}/best_val_accuracy": s.best_val_accuracy for s in per_task}
                   | {f"reward/{s.task}/accuracy_top{settings.top_n}": s.accuracy_top_n for s in per_task})
    return SearchResult(search.search_id, out, data_dir(settings.data_dir), ledger.root, ckpt_path, tracker.location, trials_run,
                        per_task, time.perf_counter() - started)


# Settings that shape the search itself: a resumed search must use the same values. `trials` may
# grow (a longer search), and where data, caches and progress bars live may change.
_MUST_MATCH_ON_RESUME = ("space", "batch_size", "seed", "controller_lr", "normalization", "baseline_decay",
                         "entropy_weight", "reward_power", "budget_scale", "top_n")


def _resumable(settings: SearchSettings) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in _MUST_MATCH_ON_RESUME}


def _check_same_search(settings: SearchSettings, saved: dict[str, Any], path: Path) -> None:
    for key, value in _resumable(settings).items():
        if key in saved and saved[key] != value:
            raise ConfigError(f"--resume: {key} is {value!r} but the search in {path} ran with {saved[key]!r}; "
                              "resume with the same settings")


def _run_trial(trainer: TextChildTrainer, trial, task, search_id: str, reward_power: float, seed: int) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    result = trainer.train(trial.config, task, seed=seed * 1_000_003 + trial.controller_step * 1000 + trial.index)
    ended_at = datetime.now(UTC)
    return {
        "trial_id": trial.trial_id, "search_id": search_id, "task": trial.task,
        "controller_step": trial.controller_step, "config": json.dumps(trial.config, sort_keys=True),
        "reward": reward_from_accuracy(result.val_accuracy, reward_power) if result.status == STATUS_OK else 0.0,
        "val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy,
        "status": result.status, "error": result.error,
        "started_at": started_at, "ended_at": ended_at, "duration_s": result.duration_s,
    }


def _committed_round(ledger: Ledger, step: int) -> list[dict[str, Any]] | None:
    path = ledger.round_path(step)
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    return sorted(pq.read_table(path).to_pylist(), key=lambda r: r["trial_id"])


def _baseline_metrics(search: MultitaskSearch) -> dict[str, float]:
    """reward/<task>/{baseline, std, trials}: the per-task normalization after a step."""
    b = search.update_rule.baselines
    out: dict[str, float] = {}
    for i, task in enumerate(search.tasks):
        out[f"reward/{task}/baseline"] = b.mean[i]
        out[f"reward/{task}/std"] = b.std(i)
        out[f"reward/{task}/trials"] = b.count[i]
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="trial", dynamic_ncols=True)

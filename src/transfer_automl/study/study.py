"""The `Study`: one search, whoever runs it.

A thin service over ask/tell, in the manner of Optuna's `Study` and Katib's suggestion service.
It owns the search directory (`SearchDir`: settings.json, checkpoint.pt, space.yaml, the ledger,
the round files) and the tracker. `taml search`, every Kubeflow step and the benchmarks drive
the same four calls:

    study = Study.open(settings)            # scratch, resume or transfer
    for step in study.pending_rounds():
        trials = study.ask_round(step)      # idempotent: the same trials however often it is called
        rows = study.run_trials(trials)     # a trial already run is not run again; packed on a GPU
        study.tell_round(step, rows)        # ledger, then tell, then checkpoint, then the tracker
    result = study.finish()                 # summary, artifacts, champions in the model registry

Each call can run in its own process (a pipeline step): state travels only through the
directory. The ledger is committed before the checkpoint, and a round already in the ledger is
never told twice, so a search stopped anywhere continues without losing or doubling a trial.
`Study.in_memory` keeps everything in memory (no files, no tracker): what the benchmarks run.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transfer_automl.errors import CheckpointError, ConfigError, StorageError, TamlError
from transfer_automl.outputs import check_output_dir
from transfer_automl.rewards import cost_aware_reward, reward_from_accuracy
from transfer_automl.rewards.summary import TaskHistory, TaskSummary, summarize
from transfer_automl.search import (
    SEARCHES,
    ControllerSearch,
    Ledger,
    LedgerRow,
    Search,
    Trial,
    make_search,
)
from transfer_automl.search.fidelity import asha_promotions, highest_rungs, sha_promotions
from transfer_automl.space import space_from_dict
from transfer_automl.study.backends import Backend, make_backend
from transfer_automl.study.lease import Lease
from transfer_automl.study.search_dir import (
    CHECKPOINT_NAME,
    SETTINGS_NAME,
    SPACE_NAME,
    SearchDir,
    child_state_key,
    result_key,
    trials_key,
)
from transfer_automl.study.settings import (
    MEASURED_CONTROLLER_LR,
    SearchSettings,
    method_option_names,
)
from transfer_automl.tracking import Tracker, check_tracking_uri
from transfer_automl.trial_status import STATUS_OK


@dataclass
class SearchResult:
    search_id: str
    method: str
    out: Path | str  # a Path for a local search, the uri for S3 ("memory" in memory)
    data_location: str
    ledger_dir: Path | str
    checkpoint: Path | str
    tracking_location: str
    trials_run: int  # trials trained by this Study object (replayed ones excluded)
    per_task: list[TaskSummary]
    wall_s: float
    champions: Any = None  # study.champions.ChampionReport: each task's best child in the MLflow registry
    browse_url: str = ""  # the search's runs in the MLflow UI ("" without an MLflow tracker)
    stopped: str = ""  # why the run ended before its last round ("" when it ran them all), e.g. the time budget
    history_entry: str = ""  # where the finished search was recorded in the task history ("" nowhere)


@dataclass
class RoundReport:
    step: int
    rows: list[LedgerRow]
    metrics: dict[str, float]  # the update's, the round's mean reward per task, baselines, best so far
    told: bool  # False: the round had been told before (a retried step), nothing changed


class Study:
    """One search: its settings, its directory (None in memory), its search and its tracker."""

    def __init__(self, settings: SearchSettings, directory: SearchDir | None, search: Search, *,
                 backend: Backend | None = None, tracker: Tracker | None = None, owns_tracker: bool = False):
        self.settings = settings
        self.directory = directory
        self.search = search
        self._backend = backend
        self._tracker = tracker
        self._tracker_started = False
        self.owns_tracker = owns_tracker  # ours (MLflow) registers the champions at the end
        self._asked: dict[int, list[Trial]] = {}
        self._memory_rows: dict[int, list[LedgerRow]] = {}  # the ledger of an in-memory study
        self._history: TaskHistory | None = None
        self._counted: set[str] = set()  # trial ids in the history
        self._fresh: set[int] = set()  # rounds this object asked first (nothing of them recorded)
        self._told: int | None = None  # trials of the told rounds (read from the ledger once)
        self.lease: Lease | None = None  # the directory's lease, held by a runner (study.lease)
        self.trials_run = 0
        self.started = time.perf_counter()
        self._child_states: dict[str, dict[str, Any]] = {}  # an in-memory study's continued children
        self._cost = None  # study.cost.CostModel over the committed rounds (refitted after each tell)
        self._cut: set[int] = set()  # rounds end_round_early cut short
        self.slow_children: list[str] = []  # trials that took more than cost.SLOW_FACTOR x their estimate
        self.transfer_record: dict[str, Any] | None = None  # --transfer auto: the history sources chosen

    # -- opening -------------------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: SearchSettings | Mapping[str, Any], store: str | Path | SearchDir | None = None, *,
             tracker: Tracker | None = None, backend: Backend | None = None, lease: bool = False) -> Study:
        """Start (scratch, transfer) or continue (resume) the search in `store` (default:
        settings.out). For resume, `settings` may be a mapping of just the settings given again:
        the stored settings are continued with them (`SearchSettings.resumed`). With `lease`, the
        study holds the directory's lease (study.lease) until `finish` or `abort`: a second runner
        on the same directory is refused."""
        given = dict(settings) if isinstance(settings, Mapping) else _all_fields(settings)
        location = store if store is not None else given.get("out")
        if not location:
            raise ConfigError("out: give the search directory")
        directory = SearchDir.of(location)
        if tracker is None:  # the default tracker reads it; refuse a bad one before writing anything
            check_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))
        if directory.is_local:  # not a file, not inside another search's own files, writable
            check_output_dir(directory.store.root, [], flag="out:")
        if given.get("init_from") == "resume":
            return _leased(directory, lease, lambda: cls._resume(directory, given, tracker, backend))
        settings = SearchSettings.from_mapping({**given, "out": directory.location})
        if lease:
            return _leased(directory, lease, lambda: cls.open(settings, directory, tracker=tracker, backend=backend))
        existing = directory.has_checkpoint() or bool(directory.ledger.files())
        if existing:
            study = cls._retried_init(directory, settings, tracker, backend)
            if study is not None:  # finish what the first try may have left undone
                if not directory.store.exists(SPACE_NAME):
                    study._write_space()
                study.tracker  # noqa: B018
                return study
            raise ConfigError(f"out: {directory} already holds a search; pass --resume (init_from=resume) to "
                              "continue it or choose another --out")
        if tracker is None and settings.search_id:  # searches share a store: refuse a taken id before writing
            from transfer_automl.study.tracking import refuse_taken_search_id

            refuse_taken_search_id(directory, settings.search_id)
        backend = backend or make_backend(settings, directory)
        transfer_record = None
        if settings.transfer == "auto":  # rank-ensemble over the history's relevant searches, or scratch
            from transfer_automl.study.history import resolve_auto_transfer

            settings, transfer_record = resolve_auto_transfer(settings, backend, directory)
        search_id = settings.search_id or f"{_id_safe(directory.name)}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        search = _new_search(settings, backend, search_id)
        settings = replace(settings, search_id=search_id)
        study = cls(settings, directory, search, backend=backend, tracker=tracker)
        study.transfer_record = transfer_record
        study._write_settings({})
        study._save_checkpoint()
        study._write_space()
        study.tracker  # noqa: B018  the params are logged as the search starts
        return study

    @classmethod
    def in_memory(cls, settings: SearchSettings | Mapping[str, Any], *, backend: Backend | None = None,
                  source: Study | Mapping[str, Any] | None = None, tracker: Tracker | None = None) -> Study:
        """A study that writes nothing: no directory, no checkpoint, no tracker (unless given).
        `source` (a study or a checkpoint body) is what init_from=transfer starts from."""
        if isinstance(settings, Mapping):
            settings = SearchSettings.from_mapping({"out": "memory", **settings})
        settings = settings.validated()
        if settings.init_from == "resume":
            raise ConfigError("init_from: an in-memory study cannot resume; it has no directory")
        if settings.transfer == "auto":  # its sources file and history record live in the search directory
            raise ConfigError("transfer: auto needs a search directory (Study.open); an in-memory study has none")
        backend = backend or make_backend(settings, None)
        body = source.search.state_dict() if isinstance(source, Study) else source
        search = _new_search(settings, backend, settings.search_id or "memory", source_body=body)
        return cls(settings, None, search, backend=backend, tracker=tracker or Tracker())

    @classmethod
    def load(cls, location: str | Path | SearchDir, *, tracker: Tracker | None = None) -> Study:
        """The search in `location` as it stands (a pipeline step after init_search, a report)."""
        directory = SearchDir.of(location)
        settings = stored_settings(directory)
        body = directory.load_checkpoint()
        return cls(settings, directory, restore_search(body), tracker=tracker)

    @classmethod
    def _resume(cls, directory: SearchDir, given: Mapping[str, Any], tracker: Tracker | None,
                backend: Backend | None) -> Study:
        if not directory.has_checkpoint():
            raise ConfigError(f"--resume: {directory} holds no search ({directory.checkpoint} not found)")
        given = {k: v for k, v in given.items() if k not in ("out", "init_from", "source")}
        stored = stored_settings(directory, fill=given)
        settings, changes = stored.resumed({**given, "init_from": "resume", "source": None}, str(directory))
        settings = _with_location(settings, directory)
        backend = backend or make_backend(settings, directory)
        body = directory.load_checkpoint(backend.space, backend.task_names)
        if body.get("name") != settings.method:
            raise ConfigError(f"--resume: the search in {directory.checkpoint} uses method {body.get('name')!r}, "
                              f"not {settings.method!r}")
        study = cls(settings, directory, restore_search(body), backend=backend, tracker=tracker)
        study.history  # noqa: B018  refuses a damaged ledger before anything is written
        if changes or not directory.store.exists(SETTINGS_NAME) or study._data_changed():
            study._write_settings(changes)
        study.tracker  # noqa: B018
        return study

    @classmethod
    def _retried_init(cls, directory: SearchDir, settings: SearchSettings, tracker: Tracker | None,
                      backend: Backend | None) -> Study | None:
        """A retried init step (the same settings, nothing told yet) reopens the search."""
        if not directory.store.exists(SETTINGS_NAME) or not directory.has_checkpoint():
            return None
        stored = stored_settings(directory)
        if settings.search_id not in (None, stored.search_id):
            return None
        # transfer=auto resolved the method and its sources when the search was first created.
        resolved = ("method", "method_options") if stored.transfer == "auto" else ()
        mine = {k: v for k, v in settings.to_dict().items() if k not in ("search_id", "progress", *resolved)}
        theirs = {k: v for k, v in stored.to_dict().items() if k not in ("search_id", "progress", *resolved)}
        body = directory.load_checkpoint()
        if mine != theirs or int(body["step"]) != 0:
            return None
        return cls(stored, directory, restore_search(body), backend=backend, tracker=tracker)

    # -- what a runner reads ------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The trainer, tasks and references (loaded on first use: a controller step needs none)."""
        if self._backend is None:
            self._backend = make_backend(self.settings, self.directory)
        return self._backend

    @property
    def tracker(self) -> Tracker:
        """Started on first use with the search's params (MLflow reopens the search's run)."""
        if self._tracker is None:
            from transfer_automl.study.tracking import default_tracker

            self._tracker, self.owns_tracker = default_tracker(self.directory), True
        if not self._tracker_started:
            from transfer_automl.study.tracking import task_datasets

            self._tracker_started = True
            where = self.directory.tracking_tags() if self.directory is not None else {}
            self._tracker.start(self.search.search_id, self.params(),
                                {"taml.space": self.search.space.name, "taml.method": self.settings.method, **where})
            self._tracker.log_datasets(task_datasets(self.backend.task_objects))
        return self._tracker

    @property
    def history(self) -> TaskHistory:
        """Per-task accuracies of the committed trials, each counted once."""
        if self._history is None:
            rows = self.rows()  # refuses a file of another schema
            if self.directory is not None:  # and foreign or doubled rows, before they are counted
                self.directory.ledger.check(self.search.search_id)
            self._history = TaskHistory(r.to_dict() for r in highest_rungs(rows))
            self._counted = {r.trial_id for r in rows}
        return self._history

    def _count(self, rows: list[LedgerRow]) -> None:
        """Add a told round to the history unless the ledger it was built from already had it."""
        if self.settings.fidelity != "none":  # a promotion replaces its parent: rebuild
            self._history = None
            return
        history = self.history  # first: built from the ledger, it may hold the round already
        new = [r for r in rows if r.trial_id not in self._counted]
        history.add(r.to_dict() for r in new)
        self._counted.update(r.trial_id for r in new)

    @property
    def rounds(self) -> int:
        """Rounds in all: those told, then enough of batch_size for the trials left. A round cut
        short by an earlier, smaller --trials stays as it was told; a grown search adds rounds."""
        left = max(0, self.settings.trials - self._told_trials())
        return self.search.step + math.ceil(left / self.settings.batch_size)

    def pending_rounds(self) -> Iterator[int]:
        """The rounds not told yet, in order (the search's step moves as they are told)."""
        while self.search.step < self.rounds:
            yield self.search.step

    def round_size(self, step: int) -> int:
        """Trials of round `step`: batch_size, or what is left of `trials` after the rounds before it."""
        batch = self.settings.batch_size
        if step < self.search.step:
            return max(0, min(batch, self.settings.trials - step * batch))
        before = self._told_trials() + (step - self.search.step) * batch
        return max(0, min(batch, self.settings.trials - before))

    def _told_trials(self) -> int:
        """Trials of the rounds told so far (the ledger's rows of steps before the search's; a
        promotion continues one of them and is not counted)."""
        if self._told is None:
            self._told = sum(1 for r in self.rows() if r.controller_step < self.search.step and r.parent_trial_id is None)
        return self._told

    def params(self) -> dict[str, Any]:
        """What the tracker logs once per search: every setting, and what the search is made of."""
        settings = {k: v for k, v in self.settings.to_dict().items() if k != "progress"}
        record = self.backend.data_record
        data = {} if not record else {
            "data.dir": record["data_dir"], "data.bundled_samples": record["bundled_samples"],
            "data.content_hash": {task: f["content_hash"] for task, f in record["files"].items()},
            **({"data.truncated_texts": truncated} if (truncated := {
                task: f["truncated_texts"] for task, f in record["files"].items() if f.get("truncated_texts")}) else {})}
        chosen = self.transfer_record or self._stored_extra("_history")
        history = {} if not chosen else {"history.sources": {u["search_id"]: u["tasks"] for u in chosen["entries"]}}
        return {**settings, "tasks": ",".join(self.search.tasks), "space_fingerprint": self.search.space.fingerprint(),
                "child_trainer": self.backend.trainer_settings, "search_state": describe(self.search), **data,
                **history}

    def rows(self) -> list[LedgerRow]:
        """Every committed trial, in ledger order."""
        if self.directory is None:
            return [r for step in sorted(self._memory_rows) for r in self._memory_rows[step]]
        return [LedgerRow.from_dict(r) for r in self.directory.ledger.read().to_pylist()]

    def summaries(self) -> list[TaskSummary]:
        return summarize([r.to_dict() for r in highest_rungs(self.rows())], self.backend.task_names,
                         self.backend.references, self.settings.top_n)

    # -- ask, run, tell ----------------------------------------------------------------------------

    def ask_round(self, step: int) -> list[Trial]:
        """The trials of round `step`; the same ones however often, and in whichever process, it
        is called (asking is deterministic given the checkpoint)."""
        if step in self._asked:
            return self._asked[step]
        if step < self.search.step:  # told before: the round's record
            recorded = self._recorded_trials(step)
            if recorded is None:
                raise ConfigError(f"round {step}: the search in {self.directory} is past it and has no record of "
                                  f"its trials ({trials_key(step)})")
            return recorded
        if step > self.search.step:
            raise ConfigError(f"round_index: the search in {self.directory or 'memory'} is at step "
                              f"{self.search.step}, not {step}; the previous round has not been told, or this "
                              "round's trials were lost")
        n = self.round_size(step)
        if n < 1:
            raise ConfigError(f"round {step}: the search has {self.settings.trials} trials, all asked; "
                              "resume with more --trials")
        trials = self.search.ask(n)
        rungs = self.settings.rungs
        if rungs is not None:  # the search's own trials start at the lowest rung
            trials = [replace(t, budget=rungs.budgets[0]) for t in trials]
        recorded = self._recorded_trials(step)
        # A recorded round may hold promotions after the search's own trials (multi-fidelity), or
        # fewer of them (a round `end_round_early` cut short).
        own = [t for t in recorded or [] if t.parent_trial_id is None]
        if recorded is not None and [trial_record(t, self.search.search_id) for t in own] != \
                [trial_record(t, self.search.search_id) for t in trials[:len(own)]]:
            raise ConfigError(f"{self.directory.where(trials_key(step))} holds other trials than the checkpoint asks "
                              "for; was the checkpoint replaced?")
        if recorded is not None:
            trials = recorded
        else:
            if self.settings.fidelity == "asha":  # what the results so far promote, beside the new trials
                trials = trials + self._promotions(step, trials, [])
            if self.directory is not None:
                self.directory.write_json(trials_key(step), [trial_record(t, self.search.search_id) for t in trials],
                                          indent=1)
                self._fresh.add(step)  # asked for the first time: no child of it has run anywhere yet
        self._asked[step] = trials
        return trials

    def more_trials(self, step: int, rows: Sequence[LedgerRow], within_s: float | None = None) -> list[Trial]:
        """Multi-fidelity: the promotions that round `step`'s results so far (`rows`) allow, added
        to the round (its trials.json too); run them, pass their rows again, until none are left.
        `sha` must do so before `tell_round`; `asha` may stop at any point: with `within_s`, it adds
        nothing when their estimated cost exceeds it (a time budget). Without --fidelity: none."""
        if self.settings.fidelity == "none":
            return []
        asked = self.ask_round(step)
        new = self._promotions(step, asked, list(rows))
        if new and within_s is not None and self.settings.fidelity == "asha":
            estimate = self.estimate_round(new)
            if estimate is not None and estimate > within_s:
                return []
        if new:
            self._asked[step] = asked + new
            if self.directory is not None:
                self.directory.write_json(trials_key(step), [trial_record(t, self.search.search_id)
                                                             for t in self._asked[step]], indent=1)
        return new

    def end_round_early(self, step: int, rows: Sequence[LedgerRow]) -> None:
        """Cut round `step` down to the trials that ran (`rows`, a prefix of its trials): a runner out
        of time. The others leave the round's record, never started, so `tell_round` commits every
        trial that ran and the search learns from those. A cut round is not refilled on resume."""
        asked = self.ask_round(step)
        ran = [r.trial_id for r in rows]
        if ran != [t.trial_id for t in asked[:len(ran)]]:
            raise ConfigError(f"round {step}: the trials run {ran[:3]}... are not the first {len(ran)} of the round")
        if not ran:
            raise ConfigError(f"round {step}: no trial ran; leave the round unstarted instead of cutting it")
        self._asked[step] = asked[:len(ran)]
        self._cut.add(step)
        if self.directory is not None:
            self.directory.write_json(trials_key(step), [trial_record(t, self.search.search_id)
                                                         for t in self._asked[step]], indent=1)

    def _promotions(self, step: int, asked: list[Trial], rows: list[LedgerRow]) -> list[Trial]:
        """Trials continuing the children that search/fidelity.py promotes, numbered after `asked`."""
        rungs = self.settings.rungs
        already = {t.parent_trial_id for t in asked if t.parent_trial_id}
        if self.settings.fidelity == "asha":
            promoted = asha_promotions(self.rows() + rows, rungs, self.settings.eta, already)
        else:
            promoted = [r for r in sha_promotions(rows, rungs, self.settings.eta) if r.trial_id not in already]
        out = []
        for parent in promoted:
            k = len(asked) + len(out)
            config = json.loads(parent.config)
            task_index = self.search.tasks.index(parent.task)
            out.append(Trial(trial_id=f"{self.search.search_id}/{step:06d}/{k:03d}", index=k, task=parent.task,
                             task_index=task_index, controller_step=step, actions=self.search.space.encode(config),
                             config=config, rung=parent.rung + 1, budget=rungs.budgets[parent.rung + 1],
                             parent_trial_id=parent.trial_id))
        return out

    def run_trial(self, trial: Trial) -> LedgerRow:
        """Train (or look up) the trial's child; a trial already run (its result file, or its
        committed round) is returned as it was, never run again."""
        return self.run_trials([trial], pack=1)[0]

    def run_trials(self, trials: Sequence[Trial], pack: int | None = None) -> list[LedgerRow]:
        """`run_trial` for several trials, in their order; up to `pack` of them train at once on
        one device (children/packing.py) when the trainer can pack them.

        pack: None is `settings.pack`, else automatic (`resolve_pack`). The children are the same
        whatever the pack: each trial keeps its configuration and its seed (`trial_seed`), so a
        packed child starts from the weights and batch order it would start from alone and ends
        within float rounding and dropout noise of it (tests/unit/test_study_packing.py)."""
        rows: list[LedgerRow | None] = [self._recorded_result(t) for t in trials]
        todo = [i for i, row in enumerate(rows) if row is None]
        k = resolve_pack(self.settings.pack if pack is None else pack, self.backend.trainer)
        for start in range(0, len(todo), k):
            chunk = [trials[i] for i in todo[start : start + k]]
            started_at = datetime.now(UTC)
            for i, trial, result in zip(todo[start : start + k], chunk, self._train(chunk, k), strict=True):
                rows[i] = self._record(trial, result, started_at)
        return rows  # type: ignore[return-value]

    def _train(self, trials: list[Trial], pack: int) -> list[Any]:
        backend = self.backend
        if pack > 1 and len(trials) > 1 and can_pack(backend.trainer) and all(t.budget is None for t in trials):
            from transfer_automl.children.packing import PackedTextTrainer

            items = [(t.config, backend.task_objects[t.task], trial_seed(self.settings.seed, t.controller_step,
                                                                          t.index)) for t in trials]
            return PackedTextTrainer(backend.trainer, max_pack=pack).train_many(items)
        return [self._train_one(t) for t in trials]

    def _train_one(self, trial: Trial) -> Any:
        backend = self.backend
        seed = trial_seed(self.settings.seed, trial.controller_step, trial.index)
        if trial.budget is None:
            return backend.trainer.train(trial.config, backend.task_objects[trial.task], seed=seed)
        # Multi-fidelity: a promotion continues its parent's child; below the top rung, keep its state.
        resume = self._child_state(trial.parent_trial_id) if trial.parent_trial_id else None
        return backend.trainer.train(trial.config, backend.task_objects[trial.task], seed=seed, budget=trial.budget,
                                     resume=resume, keep_state=trial.rung < self.settings.rungs.top)

    def _record(self, trial: Trial, result: Any, started_at: datetime) -> LedgerRow:
        """The trial's ledger row, written to its result file (the first write wins)."""
        expected = self.estimate_cost(trial)  # the cost model changes only when a round is told
        ok = result.status == STATUS_OK
        row = LedgerRow(
            trial_id=trial.trial_id, search_id=self.search.search_id, task=trial.task,
            controller_step=trial.controller_step, config=json.dumps(trial.config, sort_keys=True),
            reward=self._reward(result, expected) if ok else 0.0,
            val_accuracy=result.val_accuracy, test_accuracy=result.test_accuracy, status=result.status,
            error=result.error, started_at=started_at, ended_at=datetime.now(UTC), duration_s=result.duration_s,
            rung=trial.rung, budget=trial.budget, parent_trial_id=trial.parent_trial_id, expected_cost_s=expected,
        )
        if ok and result.state is not None:
            self._save_child_state(trial.trial_id, result.state)
        self._check_cost(trial, row)
        self.trials_run += 1
        if self.directory is not None:
            key = result_key(trial.controller_step, trial.index)
            try:
                self.directory.write_json(key, row.to_json(), if_absent=True)
            except StorageError:  # a racing retry wrote it first: keep the first
                if not self.directory.store.exists(key):
                    raise
                return self._recorded_result(trial)
        return row

    def _reward(self, result: Any, expected_cost_s: float | None) -> float:
        """The one place a child's reward is formed, so every method (and ASHA's promotions) sees
        the same: validation accuracy ** reward_power, times MnasNet's cost factor with
        --cost-target-s (rewards.cost_aware_reward; the cost is the child's estimate, its measured
        seconds while the search has no estimate yet)."""
        reward = reward_from_accuracy(result.val_accuracy, self.settings.reward_power)
        target = self.settings.cost_target_s
        if target is None:
            return reward
        cost = expected_cost_s if expected_cost_s is not None else result.duration_s
        return cost_aware_reward(reward, cost, target, self.settings.cost_weight)

    def tell_round(self, step: int, rows: Sequence[LedgerRow | Mapping[str, Any]]) -> RoundReport:
        """Commit round `step` to the ledger, tell the search, write the checkpoint, log the round.
        Rows may come in any order (a pipeline's collected results); a round told before is only
        made sure of in the ledger, never told twice."""
        rows = [r if isinstance(r, LedgerRow) else LedgerRow.from_dict(dict(r), f"round {step}") for r in rows]
        if step > self.search.step:
            self.ask_round(step)  # raises: the previous round has not been told
        trials = self.ask_round(step)
        rows = _in_trial_order(trials, rows, step)
        if step < self.search.step:  # a retried step: the commit a crash may have lost, and nothing else
            self._commit(step, rows)
            return RoundReport(step, rows, {}, told=False)
        # A round end_round_early cut (here, or fewer own trials than the round has: recorded so)
        # may leave a bracket unfinished.
        cut = step in self._cut or sum(1 for t in trials if t.parent_trial_id is None) < self.round_size(step)
        if self.settings.fidelity == "sha" and not cut:
            pending = self._promotions(step, trials, rows)
            if pending:
                raise ConfigError(f"round {step}: synchronous successive halving (fidelity sha) still has "
                                  f"{len(pending)} promotion(s) to run; run Study.more_trials until it returns none")
        self._commit(step, rows)
        tracker = self.tracker  # the trials before the checkpoint: a crash in between replays them
        ledger_file = Ledger.round_name(step)
        for row, trial in zip(rows, trials, strict=True):
            tracker.log_trial({**row.to_dict(), "ledger_file": ledger_file}, trial.config)
        # The search learns from its own trials' rung-0 results (search/fidelity.py says why).
        told = [(t, r) for t, r in zip(trials, rows, strict=True) if t.parent_trial_id is None]
        metrics = self.search.tell([t for t, _ in told], [r.reward for _, r in told])
        self._save_checkpoint()
        self._count(rows)
        if self._told is not None:
            self._told += len(told)  # the search's own trials; promotions continue them
        self._asked.pop(step, None)
        self._drop_child_states(rows)
        self._cost = None  # the next round's estimates include this one
        round_rewards = {f"reward/{task}/reward": _mean([r.reward for _, r in told if r.task == task])
                         for task in sorted({r.task for _, r in told})}
        task_metrics = {k: v for task in self.search.tasks for k, v in
                        self.history.metrics(task, self.settings.top_n).items()}
        all_metrics = {**metrics, **round_rewards, **baseline_metrics(self.search), **task_metrics}
        all_metrics = {k: float(v) for k, v in all_metrics.items() if math.isfinite(float(v))}
        tracker.log_controller(step, all_metrics)
        return RoundReport(step, rows, all_metrics, told=True)

    def finish(self, register: bool = True, on_phase: Callable[[str, str], None] | None = None) -> SearchResult:
        """The search's summary; its files logged beside its runs, the run closed, and (with the
        study's own MLflow tracker) each task's best child registered as a champion. `on_phase(name,
        detail)` hears each step as it starts (summary, refit, registration)."""
        announce = on_phase or (lambda name, detail="": None)
        announce("summary", "the search's files and per-task summary to the tracker")
        per_task = self.summaries()
        tracker = self.tracker
        if self.directory is not None:
            for key in (CHECKPOINT_NAME, SPACE_NAME, SETTINGS_NAME):
                tracker.log_artifact(self.directory.local_copy(key))
        top = self.settings.top_n
        summary = {f"reward/{s.task}/best_val_accuracy": s.best_val_accuracy for s in per_task} \
            | {f"reward/{s.task}/accuracy_top{top}": s.accuracy_top_n for s in per_task}
        # At the last told step, whichever process finishes (a pipeline's last step knows no step).
        tracker.log_controller(max(0, self.search.step - 1), {k: v for k, v in summary.items() if math.isfinite(v)})
        tracker.finish({})
        from transfer_automl.study.history import record_search

        history_entry = record_search(self, on_start=lambda where: announce(
            "history", f"the search's summary, task fingerprints and checkpoint to {where}")) or ""
        champions = None
        if register and self.owns_tracker and self.directory is not None:
            from transfer_automl.study.champions import register_after_search

            champions = register_after_search(self.settings, self.directory, tracker, on_phase=on_phase)
        self.release()
        d = self.directory
        return SearchResult(
            self.search.search_id, self.settings.method, "memory" if d is None else d.store.root if d.is_local
            else d.store.uri, self.backend.data_location, "memory" if d is None else d.ledger.root,
            "memory" if d is None else d.checkpoint, tracker.location, self.trials_run, per_task,
            time.perf_counter() - self.started, champions, _browse_url(tracker), history_entry=history_entry)

    def abort(self) -> None:
        """Close the tracker's run as KILLED (an interrupted or failed runner); release the lease."""
        try:
            if self._tracker is not None and self._tracker_started:
                self._tracker.finish({}, status="KILLED")
        finally:
            self.release()

    def release(self) -> None:
        """Give up the directory's lease, if this study holds it."""
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    # -- multi-fidelity and cost -----------------------------------------------------------------------

    def _child_state(self, trial_id: str) -> dict[str, Any]:
        """The state a promoted trial's parent left (children/trainer.py `child_state`)."""
        if self.directory is None:
            if trial_id not in self._child_states:
                raise ConfigError(f"trial {trial_id}: no saved child to continue (an in-memory study keeps them "
                                  "only while it lives)")
            return self._child_states[trial_id]
        import io

        import torch

        key = child_state_key(trial_id)
        if not self.directory.store.exists(key):
            raise CheckpointError(f"{self.directory.where(key)}: the child of trial {trial_id} to continue is missing; "
                                  "a promotion never restarts a child from scratch")
        return torch.load(io.BytesIO(self.directory.store.get_bytes(key)), weights_only=True)

    def _save_child_state(self, trial_id: str, state: dict[str, Any]) -> None:
        if self.directory is None:
            self._child_states[trial_id] = state
            return
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.directory.store.put_bytes(child_state_key(trial_id), buffer.getvalue())

    def _drop_child_states(self, rows: list[LedgerRow]) -> None:
        """A promoted child's parent state is spent (a child is promoted once): delete it after the
        promotion is committed."""
        for row in rows:
            if row.parent_trial_id and row.status == STATUS_OK:
                if self.directory is None:
                    self._child_states.pop(row.parent_trial_id, None)
                elif self.directory.store.exists(child_state_key(row.parent_trial_id)):
                    self.directory.store.delete(child_state_key(row.parent_trial_id))

    @property
    def cost_model(self):
        """study.cost.CostModel over this search's committed rounds: every runner (this loop, a
        pipeline's pods) estimates a trial from the same rows."""
        if self._cost is None:
            from transfer_automl.study.cost import CostModel

            self._cost = CostModel(self.backend.trainer)
            rows = self.rows()
            budgets = {r.trial_id: r.budget for r in rows}
            for r in rows:
                if r.status in (STATUS_OK, "timeout"):
                    parent = budgets.get(r.parent_trial_id) if r.parent_trial_id else None
                    self._cost.observe(r.config, r.budget, r.duration_s, parent)
        return self._cost

    def _parent_budget(self, trial: Trial) -> float | None:
        if trial.parent_trial_id is None:
            return None
        return self.settings.rungs.budgets[trial.rung - 1]

    def estimate_cost(self, trial: Trial) -> float | None:
        """The trial's expected seconds (study/cost.py), None before any round was committed."""
        return self.cost_model.estimate(trial.config, trial.budget, self._parent_budget(trial))

    def estimate_round(self, trials: Sequence[Trial]) -> float | None:
        """Expected seconds of running `trials`; for fidelity sha, of their whole bracket (each rung
        costs about what rung 0 does: n / eta^k children, eta^k times the budget)."""
        estimates = [self.estimate_cost(t) for t in trials]
        if any(e is None for e in estimates):
            return None
        total = sum(estimates)
        if self.settings.fidelity == "sha" and trials and all(t.rung == 0 for t in trials):
            total *= 1 + self.settings.rungs.top * (1 - 1 / self.settings.eta)
        return total

    def _check_cost(self, trial: Trial, row: LedgerRow) -> None:
        """Report a child that took more than cost.SLOW_FACTOR times its estimate."""
        import sys

        from transfer_automl.study.cost import MIN_SLOW_S, SLOW_FACTOR

        expected = row.expected_cost_s
        if expected is not None and row.duration_s > max(SLOW_FACTOR * expected, expected + MIN_SLOW_S):
            self.slow_children.append(trial.trial_id)
            print(f"taml: trial {trial.trial_id} took {row.duration_s:.1f} s, {row.duration_s / expected:.1f}x its "
                  f"estimated {expected:.1f} s", file=sys.stderr)

    # -- files -----------------------------------------------------------------------------------------

    def _commit(self, step: int, rows: list[LedgerRow]) -> None:
        if self.directory is None:
            self._memory_rows.setdefault(step, rows)
        else:
            self.directory.ledger.append_round(step, rows)

    def _save_checkpoint(self) -> None:
        if self.directory is not None:
            self.directory.save_checkpoint({**self.search.state_dict(), "search_settings": self.settings.to_dict()})

    def _write_settings(self, changes: Mapping[str, tuple[Any, Any]]) -> None:
        """settings.json: the settings, and every change a resume made (when, at which step)."""
        d = self.directory
        history = []
        if d.store.exists(SETTINGS_NAME):
            history = list(d.read_json(SETTINGS_NAME).get("_changes", []))
        if changes:
            history.append({"at": datetime.now(UTC).isoformat(), "step": self.search.step,
                            "changed": {k: {"from": old, "to": new} for k, (old, new) in changes.items()}})
        body = {**self.settings.to_dict(), "progress": False}
        data = self.backend.data_record or self._stored_data()
        chosen = self.transfer_record or self._stored_extra("_history")
        d.write_json(SETTINGS_NAME, {**body, **({"_data": data} if data else {}),
                                     **({"_history": chosen} if chosen else {}),
                                     **({"_changes": history} if history else {})}, indent=1)

    def _stored_data(self) -> dict[str, Any]:
        """settings.json's `_data`: what the search recorded it read (tasks.registry.data_record)."""
        return self._stored_extra("_data")

    def _stored_extra(self, key: str) -> dict[str, Any]:
        """A record settings.json keeps beside the settings: `_data`, `_history` (--transfer auto)."""
        d = self.directory
        if d is None or not d.store.exists(SETTINGS_NAME):
            return {}
        stored = d.read_json(SETTINGS_NAME)
        return dict(stored.get(key) or {}) if isinstance(stored, dict) else {}

    def _data_changed(self) -> bool:
        return bool(self.backend.data_record) and self.backend.data_record != self._stored_data()

    def _write_space(self) -> None:
        import tempfile

        from transfer_automl.space import save_space

        with tempfile.TemporaryDirectory(prefix="taml-space-") as tmp:
            local = Path(tmp) / SPACE_NAME
            save_space(self.search.space, local)
            self.directory.store.put_file(SPACE_NAME, local)  # atomic in every store

    def _recorded_trials(self, step: int) -> list[Trial] | None:
        if self.directory is None:
            return self._asked.get(step)
        if not self.directory.store.exists(trials_key(step)):
            return None
        return [trial_from_record(t) for t in self.directory.read_json(trials_key(step))]

    def _recorded_result(self, trial: Trial) -> LedgerRow | None:
        if self.directory is None or trial.controller_step in self._fresh:
            return None
        key = result_key(trial.controller_step, trial.index)
        if self.directory.store.exists(key):
            row = LedgerRow.from_dict(self.directory.read_json(key), str(self.directory.where(key)))
        else:
            committed = self.directory.ledger.read_round(trial.controller_step) or []
            row = next((LedgerRow.from_dict(r) for r in committed if r["trial_id"] == trial.trial_id), None)
            if row is None:
                return None
        if row.trial_id != trial.trial_id:
            raise ConfigError(f"{self.directory.where(key)} holds trial {row.trial_id!r}, not {trial.trial_id!r}")
        return row


def _leased(directory: SearchDir, lease: bool, open_study) -> Study:
    """`open_study()` under the directory's lease (taken before anything is written, kept by the
    study); released again if opening fails."""
    if not lease:
        return open_study()
    held = Lease(directory).acquire()
    try:
        study = open_study()
    except BaseException:
        held.release()
        raise
    study.lease = held
    return study


# -- the search itself ------------------------------------------------------------------------------


def _new_search(settings: SearchSettings, backend: Backend, search_id: str,
                source_body: Mapping[str, Any] | None = None) -> Search:
    """A new search (scratch) or one warm-started from a pretrained controller (transfer)."""
    search_cls = SEARCHES[settings.method]
    options = dict(settings.method_options)
    is_controller = isinstance(search_cls, type) and issubclass(search_cls, ControllerSearch)
    if settings.init_from != "transfer":
        if not is_controller:
            return make_search(settings.method, backend.space, backend.task_names, search_id, seed=settings.seed,
                               **options)
        return make_search(settings.method, backend.space, backend.task_names, search_id, seed=settings.seed,
                           update_config=update_config(search_cls.update_rule_name, settings, measured=True))
    if not is_controller:
        raise ConfigError(f"init_from=transfer needs a controller search, not {settings.method!r}")
    body = dict(source_body) if source_body is not None else _source_body(settings, backend)
    if body.get("name") != settings.method:
        raise ConfigError(f"--from {settings.source} holds a {body.get('name')!r} search; transfer with "
                          f"--method {body.get('name')}")
    if space_from_dict(body["space"], source="checkpoint").fingerprint() != backend.space.fingerprint():
        raise CheckpointError(f"--from {settings.source} searched another space than {backend.space.name!r}; a "
                              "controller transfers only onto its own space")
    from transfer_automl.transfer.warm_start import warm_start_tasks

    return warm_start_tasks(
        body, backend.task_names, settings.transfer_sources, settings.embedding, seed=settings.seed,
        mixing_gamma=settings.mixing_gamma, mixing_samples=settings.mixing_samples, search_id=search_id,
        update_config={**dict(body["update_config"]), **update_config(search_cls.update_rule_name, settings)})


def _source_body(settings: SearchSettings, backend: Backend) -> dict[str, Any]:
    from transfer_automl.search import load_checkpoint

    return load_checkpoint(source_checkpoint(settings.source), backend.space)


def source_checkpoint(source: str) -> str | Path:
    """--from: a search directory (local or s3://) or a checkpoint file in one."""
    from transfer_automl.storage import is_remote

    if is_remote(source):
        return source if source.endswith(".pt") else SearchDir.of(source).checkpoint
    path = Path(source)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def update_config(rule_name: str, settings: SearchSettings, measured: bool = False) -> dict[str, Any]:
    """The update rule's settings the user gave (method_options, then the named settings); with
    `measured` (a new search), the measured step size (MEASURED_CONTROLLER_LR) where none was given;
    the rule's defaults for the rest. A transferred search keeps its source's unless given."""
    from transfer_automl.algorithms import UPDATE_RULES

    lr = settings.controller_lr
    if lr is None and measured and "learning_rate" not in settings.method_options:
        lr = MEASURED_CONTROLLER_LR.get(settings.method)
    given = {**settings.method_options, "learning_rate": lr,
             "normalization": settings.normalization, "baseline_decay": settings.baseline_decay,
             "entropy_weight": settings.entropy_weight}
    known = {f.name for f in fields(UPDATE_RULES[rule_name].config_class)}
    return {k: v for k, v in given.items() if v is not None and k in known}


def restore_search(body: Mapping[str, Any]) -> Search:
    """Rebuild any registered search from its checkpoint body."""
    name = body.get("name")
    if name not in SEARCHES:
        raise CheckpointError(f"checkpoint is for search method {name!r}, which this taml does not have "
                              f"({sorted(SEARCHES)})")
    search_cls = SEARCHES[name]
    try:
        if isinstance(search_cls, type) and issubclass(search_cls, ControllerSearch):
            return ControllerSearch.from_checkpoint(dict(body))
        search = make_search(name, space_from_dict(body["space"], source="checkpoint"), list(body["tasks"]),
                             str(body["search_id"]), **dict(body.get("settings", {})))
        search.load_state_dict(dict(body))
        return search
    except TamlError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
        # The checksum proves these are the bytes written, not that a method's own state in them
        # is whole (a body edited and re-framed, or written by a broken build): a clean refusal.
        raise CheckpointError(f"checkpoint of search {body.get('search_id')!r} ({name}) cannot be restored: "
                              f"{type(exc).__name__}: {str(exc)[:200]}") from None


def stored_settings(directory: SearchDir, fill: Mapping[str, Any] | None = None) -> SearchSettings:
    """The settings the search in `directory` runs with: settings.json, or for a search written
    before it existed, what its checkpoint recorded, with `fill` for what it did not record."""
    if directory.store.exists(SETTINGS_NAME):
        raw = directory.read_json(SETTINGS_NAME)
        if not isinstance(raw, dict):
            raise ConfigError(f"{directory.where(SETTINGS_NAME)}: expected a JSON object of settings")
        raw = {k: v for k, v in raw.items() if not k.startswith("_")}
        settings = SearchSettings.from_mapping(raw, str(directory.where(SETTINGS_NAME)))
        return _with_location(settings, directory)
    if not directory.has_checkpoint():
        raise ConfigError(f"search_dir: {directory} holds no search ({SETTINGS_NAME} and {CHECKPOINT_NAME} not found)")
    return settings_from_checkpoint(directory.load_checkpoint(), directory.location, fill)


def settings_from_checkpoint(body: Mapping[str, Any], location: str, fill: Mapping[str, Any] | None = None
                             ) -> SearchSettings:
    """What a checkpoint records of its settings (all of them since settings.json exists; a few
    before), with `fill` for the rest."""
    saved = dict(body.get("search_settings", {}))
    known = set(SearchSettings.__dataclass_fields__)
    values = {"tasks": tuple(body["tasks"]), **{k: v for k, v in (fill or {}).items() if k in known},
              **{k: v for k, v in saved.items() if k in known}}
    values.update(out=location, search_id=str(body["search_id"]), method=str(body["name"]))
    values.setdefault("trials", max(1, int(body["step"]) * int(values.get("batch_size", 1))))
    return SearchSettings.from_mapping(values, f"{location} (checkpoint)")


def _with_location(settings: SearchSettings, directory: SearchDir) -> SearchSettings:
    return replace(settings, out=directory.location) if settings.out != directory.location else settings


def _all_fields(settings: SearchSettings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


def can_pack(trainer: Any) -> bool:
    """Whether `trainer` trains children in packs: the text trainer (frozen-feature children)."""
    from transfer_automl.children.trainer import TextChildTrainer

    return isinstance(trainer, TextChildTrainer)


AUTO_PACK_CUDA = 64  # children per pack on a GPU (children/packing.py: PackedTextTrainer's max_pack)


def resolve_pack(pack: int | None, trainer: Any) -> int:
    """Children trained at once: `pack` when given; automatic (None or 0) is AUTO_PACK_CUDA when the
    trainer trains on CUDA, else 1 (on a CPU one process already uses every core)."""
    if pack:
        return int(pack)
    device = getattr(trainer, "device", None)
    return AUTO_PACK_CUDA if can_pack(trainer) and getattr(device, "type", "cpu") == "cuda" else 1


def describe(search: Search) -> dict[str, Any]:
    if isinstance(search, ControllerSearch):
        return {"controller": search.controller.kind, "controller_config": search.controller.config.to_dict(),
                "update_rule": search.update_rule.name, "update_config": search.update_rule.config.to_dict()}
    return {"method": search.name, "settings": dict(search.state_dict().get("settings", {}))}


def trial_seed(search_seed: int, controller_step: int, index: int) -> int:
    """The child's seed: a child retrained with it reproduces its ledger row (study.champions)."""
    return search_seed * 1_000_003 + controller_step * 1000 + index


def baseline_metrics(search: Search) -> dict[str, float]:
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


def _browse_url(tracker: Tracker) -> str:
    """The MLflow UI's page of the search's runs, where the tracker (or the one it wraps) has one."""
    inner = getattr(tracker, "inner", tracker)
    try:
        return inner.browse_url() if hasattr(inner, "browse_url") and getattr(inner, "experiment_id", "") else ""
    except Exception:  # a display nicety: never a reason to fail a finished search
        return ""


def trial_record(trial: Trial, search_id: str) -> dict[str, Any]:
    """A trial as JSON (rounds/<step>/trials.json, a pipeline's loop item)."""
    return {"trial_id": trial.trial_id, "search_id": search_id, "task": trial.task, "task_index": trial.task_index,
            "controller_step": trial.controller_step, "index": trial.index, "actions": list(trial.actions),
            "config": json.dumps(trial.config, sort_keys=True),
            **({"rung": trial.rung, "budget": trial.budget} if trial.budget is not None else {}),
            # no null: a pipeline's loop item becomes a protobuf Struct, which kfp.local refuses None in
            **({"parent_trial_id": trial.parent_trial_id} if trial.parent_trial_id is not None else {})}


def trial_from_record(d: Mapping[str, Any]) -> Trial:
    try:
        return Trial(trial_id=str(d["trial_id"]), index=int(d["index"]), task=str(d["task"]),
                     task_index=int(d["task_index"]), controller_step=int(d["controller_step"]),
                     actions=[int(a) for a in d["actions"]], config=json.loads(d["config"]),
                     rung=int(d.get("rung", 0)), budget=None if d.get("budget") is None else float(d["budget"]),
                     parent_trial_id=None if d.get("parent_trial_id") is None else str(d["parent_trial_id"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"trial: not a trial record ({type(exc).__name__}: {exc}): {dict(d)!r:.200}") from None


def _in_trial_order(trials: list[Trial], rows: list[LedgerRow], step: int) -> list[LedgerRow]:
    by_id = {r.trial_id: r for r in rows}
    expected = [t.trial_id for t in trials]
    if sorted(by_id) != sorted(expected) or len(rows) != len(expected):
        missing, extra = sorted(set(expected) - set(by_id)), sorted(set(by_id) - set(expected))
        raise ConfigError(f"results: round {step} asked {len(expected)} trials, got {len(rows)} results "
                          f"(missing {missing}, foreign {extra})")
    return [by_id[t] for t in expected]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


__all__ = ["RoundReport", "SearchResult", "Study", "baseline_metrics", "can_pack", "describe",
           "method_option_names", "resolve_pack", "restore_search", "stored_settings", "trial_from_record",
           "trial_record", "trial_seed", "update_config"]


def _id_safe(name: str) -> str:
    """A directory name as the start of a search id (letters, digits, '.', '_', '-')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:100] or "search"

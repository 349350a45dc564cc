"""Champion refit: each task's best configurations retrained at the full budget, the best kept.

A search trains its children at a fraction of the papers' budget (`--budget-scale`, multi-fidelity
rungs) to compare many configurations; the model worth deploying is a good configuration trained
for its whole budget. After a search, per task:

* `mode="none"`: the best child as the search trained it: its ledger row retrained with its seed
  and budget, and refused unless it reproduces the row's validation and test accuracy.
* `mode="best"` / `"topk"`: the top 1 / `k` configurations, ranked by validation accuracy at the
  highest rung each reached (the first of equals in ledger order, as the search summary), are
  retrained at the full budget (budget scale 1.0, the papers' training steps, or the search's own
  scale when it was larger) with early stopping on validation (children/early_stopping.py), each
  with its search seed. The candidate with the best refit VALIDATION accuracy is the champion; ties
  go to the earlier candidate in ranking order. Test accuracy is scored and reported, never used
  to select. A candidate whose refit fails (diverged before its first evaluation) scores 0 and
  cannot be chosen.
* `mode="ensemble"`: the top `k` refit as with `"topk"`; the champion is all of them that trained
  (at least two), predicting the mean of their class probabilities. Picking one of k by validation
  accuracy is a coin flip where validation is a few hundred texts (docs/benchmarks/quality.md:
  primary_emotions' pick by 252 texts tested 5 points below the other two); averaging removes that
  choice and the variance of each member, as the AutoML systems users know do (auto-sklearn's and
  AutoGluon's final models are ensembles: Feurer et al. 2015, Erickson et al. 2020; Caruana et
  al. 2004). Nothing is chosen by a score, so test accuracy cannot leak into it.

`refit_champions` trains and writes `refit.json` in the search directory (through its store, so
also on s3://); study/champions.py registers the chosen models. refit.json is read by benchmarks:
its shape is fixed (`refit_report`), one entry per task, candidates in ranking order, seconds
measured around each candidate's training (features included, the first time a task's module is
read).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transfer_automl.children.early_stopping import EarlyStopping
from transfer_automl.errors import ConfigError, TamlError
from transfer_automl.study.search_dir import SETTINGS_NAME, SearchDir
from transfer_automl.trial_status import STATUS_OK

REFIT_NAME = "refit.json"
FULL_BUDGET_SCALE = 1.0  # the papers' training steps (children/spec.py)
# 20 evaluations over the budget; stop after 5 in a row without a better one (a quarter of the budget).
REFIT_EARLY_STOPPING = EarlyStopping(evaluations=20, patience=5)


@dataclass
class RefitCandidate:
    """One configuration of a task, as the search scored it and as the refit did."""

    row: dict[str, Any]  # its ledger row (at the highest rung it reached)
    seed: int
    refit_val_accuracy: float = 0.0
    refit_test_accuracy: float = 0.0
    steps: int = 0
    max_steps: int = 0
    cost_s: float = 0.0
    ok: bool = False
    model: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"trial_id": str(self.row["trial_id"]), "search_val_accuracy": float(self.row["val_accuracy"]),
                "search_test_accuracy": float(self.row["test_accuracy"]),
                "refit_val_accuracy": float(self.refit_val_accuracy),
                "refit_test_accuracy": float(self.refit_test_accuracy), "steps": int(self.steps),
                "max_steps": int(self.max_steps), "cost_s": float(self.cost_s)}


@dataclass
class Ensemble:
    """A task's champion under `mode="ensemble"`: its members (in ranking order) and the accuracy
    of the mean of their class probabilities."""

    members: list[RefitCandidate]
    val_accuracy: float
    test_accuracy: float


@dataclass
class RefitResult:
    """What `refit_models` trained: the refit.json body, each task's champion and its task object
    (under `mode="ensemble"`, `ensembles[task]` is the champion and `champions[task]` its best
    member by refit validation)."""

    report: dict[str, Any]
    champions: dict[str, RefitCandidate] = field(default_factory=dict)
    ensembles: dict[str, Ensemble] = field(default_factory=dict)
    task_objects: dict[str, Any] = field(default_factory=dict)
    wide_buckets: int = 0


def refit_champions(search_dir: str | Path, mode: str = "topk", k: int = 3, *, data_dir: str | None = None,
                    tasks: Sequence[str] | None = None, cache_dir: Any = None,
                    on_phase: Callable[..., None] | None = None) -> dict[str, Any]:
    """Refit the search in `search_dir` (local or s3://), write and return refit.json's body:

    {"search_id", "mode", "k", "total_cost_s", "tasks": {task: {"champion_trial_id",
    "champion_val_accuracy", "champion_test_accuracy", ["ensemble_trial_ids",] "candidates": [{"trial_id",
    "search_val_accuracy", "search_test_accuracy", "refit_val_accuracy", "refit_test_accuracy",
    "steps", "max_steps", "cost_s"}, ...]}}}

    With mode "ensemble" the champion's accuracies are the ensemble's, "champion_trial_id" is its
    first member's and "ensemble_trial_ids" lists them all. Trains but registers nothing
    (study/champions.py does). `data_dir`, `tasks`, `cache_dir` as for `register_champions`;
    `on_phase(name, detail)` hears each candidate as it starts."""
    return refit_models(search_dir, mode, k, data_dir=data_dir, tasks=tasks, cache_dir=cache_dir,
                        on_phase=on_phase).report


def refit_models(search_dir: str | Path, mode: str = "topk", k: int = 3, *, data_dir: str | None = None,
                 tasks: Sequence[str] | None = None, cache_dir: Any = None, on_phase: Callable[..., None] | None = None,
                 early_stopping: EarlyStopping = REFIT_EARLY_STOPPING) -> RefitResult:
    """`refit_champions` keeping the trained champions (models on CPU, in eval mode) for registering."""
    check_refit(mode, k)
    announce = on_phase or (lambda name, detail="": None)
    out = SearchDir.of(search_dir)
    body = out.load_checkpoint()
    saved = dict(body.get("search_settings", {}))
    rows = out.ledger.read().to_pylist()
    ranked = ranked_rows(rows, 1 if mode in ("none", "best") else k)
    if not ranked:
        raise TamlError(f"search {body['search_id']} in {out} has no trial with status ok: nothing to refit")
    data_dir, tasks, cache_dir = search_inputs(out, data_dir, tasks, cache_dir)
    search_scale = float(saved.get("budget_scale", 0.05))
    scale = search_scale if mode == "none" else max(FULL_BUDGET_SCALE, search_scale)
    backend = search_backend(body, saved, tuple(tasks or body["tasks"]), data_dir,
                             cache_dir or out.store.sub("cache/features"), scale)
    trainer, loaded = backend.trainer, backend.task_objects
    parents = {r["trial_id"]: r.get("parent_trial_id") for r in rows}
    result = RefitResult({"search_id": str(body["search_id"]), "mode": mode, "k": int(k), "total_cost_s": 0.0,
                          "tasks": {}}, task_objects=loaded, wide_buckets=trainer.config.wide_buckets)
    unknown = sorted(set(ranked) - set(loaded))
    if unknown:
        raise ConfigError(f"tasks: the ledger of {out} has task(s) {unknown}, which are not among {sorted(loaded)}")
    per_task = {task: [RefitCandidate(row, trial_seed_of(row, int(saved.get("seed", 0)), parents)) for row in rows_]
                for task, rows_ in sorted(ranked.items())}
    pack = _pack(saved.get("pack"), trainer) if mode != "none" else 1
    if pack > 1:  # on a GPU: every task's candidates at once, same-shape ones stacked (children/packing.py)
        everyone = [(task, c) for task, cs in per_task.items() for c in cs]
        announce("refit", f"refitting {len(everyone)} candidates of {len(per_task)} task(s) at the full budget with "
                          f"early stopping, packed {pack} at a time")
        _full_budget_packed(trainer, loaded, everyone, early_stopping, pack)
    for task_name, refits in per_task.items():
        for rank, candidate in enumerate(refits if pack == 1 else [], 1):
            row = candidate.row
            if mode == "none":
                announce("refit", f"retraining {task_name}'s best child (trial {row['trial_id']}, val "
                                  f"{float(row['val_accuracy']):.4f}) to log it as a model")
                reproduce(trainer, loaded[task_name], candidate, out)
            else:
                announce("refit", f"refitting {task_name}'s candidate {rank} of {len(refits)} (trial "
                                  f"{row['trial_id']}, search val {float(row['val_accuracy']):.4f}) at the full "
                                  "budget with early stopping")
                _full_budget(trainer, loaded[task_name], candidate, early_stopping)
        champion = choose_champion(refits)
        if champion is None:
            raise TamlError(f"refit of {task_name} in {out}: every candidate failed at the full budget "
                            f"({', '.join(str(c.row['trial_id']) for c in refits)}); `--refit none` registers "
                            "the best child as the search trained it")
        result.champions[task_name] = champion
        ensemble = ensemble_of(trainer, loaded[task_name], refits) if mode == "ensemble" else None
        entry = {"champion_trial_id": str(champion.row["trial_id"]),
                 "champion_val_accuracy": float(champion.refit_val_accuracy),
                 "champion_test_accuracy": float(champion.refit_test_accuracy)}
        if ensemble is not None:
            result.ensembles[task_name] = ensemble
            entry = {"champion_trial_id": str(ensemble.members[0].row["trial_id"]),
                     "champion_val_accuracy": ensemble.val_accuracy, "champion_test_accuracy": ensemble.test_accuracy,
                     "ensemble_trial_ids": [str(c.row["trial_id"]) for c in ensemble.members]}
        result.report["tasks"][task_name] = entry | {"candidates": [c.to_dict() for c in refits]}
        result.report["total_cost_s"] += sum(c.cost_s for c in refits)
        kept = ensemble.members if ensemble is not None else [champion]
        for c in refits:
            if not any(c is member for member in kept):
                c.model = None  # only the champions are kept for registering
    out.write_json(REFIT_NAME, result.report, indent=2)
    return result


def check_refit(mode: Any, k: Any, where: str = "") -> None:
    """The refit settings as SearchSettings checks them (`--refit`, `--refit-k`); ConfigError names them."""
    from transfer_automl.study.settings import check_fields

    check_fields({"refit": mode, "refit_k": k}, where or "settings")


def ranked_rows(rows: list[dict[str, Any]], k: int) -> dict[str, list[dict[str, Any]]]:
    """Each task's top `k` configurations by validation accuracy at the highest rung each reached
    (status ok), best first; equal accuracies keep ledger order."""
    from transfer_automl.search.fidelity import highest_rungs

    per_task: dict[str, list[dict[str, Any]]] = {}
    for row in highest_rungs(rows):
        if row["status"] == STATUS_OK:
            per_task.setdefault(row["task"], []).append(row)
    return {task: sorted(found, key=lambda r: -float(r["val_accuracy"]))[:k] for task, found in per_task.items()}


def choose_champion(candidates: Sequence[RefitCandidate]) -> RefitCandidate | None:
    """The candidate with the best refit validation accuracy; the earlier of equals. Test accuracy
    is not read."""
    best = None
    for candidate in candidates:
        if candidate.ok and (best is None or candidate.refit_val_accuracy > best.refit_val_accuracy):
            best = candidate
    return best


def ensemble_of(trainer: Any, task: Any, candidates: Sequence[RefitCandidate]) -> Ensemble | None:
    """The candidates that trained, as one model: the mean of their class probabilities (summed in
    ranking order, as serving/champion_model.py does), scored on validation and test. None with
    fewer than two: a single model is its own champion."""
    members = [c for c in candidates if c.ok]
    if len(members) < 2:
        return None

    def accuracy(split: str) -> float:
        total = None
        for member in members:
            probabilities = trainer.probabilities(member.model, task, split)
            total = probabilities if total is None else total + probabilities
        predicted = (total / np.float32(len(members))).argmax(axis=1)
        return float(np.mean(predicted == task.labels[task.splits[split]]))

    ensemble = Ensemble(members, accuracy("validation"), accuracy("test"))
    for member in members:
        member.model = member.model.cpu().eval()
    return ensemble


def trial_seed_of(row: dict[str, Any], search_seed: int, parents: dict[str, Any]) -> int:
    """The seed the search gave the trial's child (a promoted trial: its rung-0 trial's)."""
    from transfer_automl.search.fidelity import lineage_root
    from transfer_automl.study.study import trial_seed

    root = lineage_root(row["trial_id"], parents)
    step, index = (int(part) for part in root.rsplit("/", 2)[-2:])  # trial ids are "<search_id>/<step>/<k>"
    return trial_seed(search_seed, step, index)


def _pack(pack: Any, trainer: Any) -> int:
    """The search's --pack (default: 64 on CUDA, 1 on CPU) where the trainer can pack."""
    from transfer_automl.study.study import can_pack, resolve_pack

    return resolve_pack(pack, trainer) if can_pack(trainer) else 1


def _full_budget_packed(trainer: Any, loaded: dict[str, Any], candidates: list[tuple[str, RefitCandidate]],
                        rule: EarlyStopping, pack: int) -> None:
    """`_full_budget` for many candidates at once; each one's cost is its share of its pack's time."""
    from transfer_automl.children.packing import PackedTextTrainer

    items = [(json.loads(c.row["config"]), loaded[task], c.seed) for task, c in candidates]
    results = PackedTextTrainer(trainer, max_pack=pack, keep_models=True).train_many(items, early_stopping=rule)
    for (_, candidate), result in zip(candidates, results, strict=True):
        _record(candidate, result, result.duration_s)


def _full_budget(trainer: Any, task: Any, candidate: RefitCandidate, rule: EarlyStopping) -> None:
    """Train the candidate's configuration for all its steps, early stopping on validation."""
    clock = time.perf_counter()
    result = trainer.train(json.loads(candidate.row["config"]), task, seed=candidate.seed, keep_model=True,
                           early_stopping=rule)
    _record(candidate, result, time.perf_counter() - clock)


def _record(candidate: RefitCandidate, result: Any, cost_s: float) -> None:
    candidate.cost_s = cost_s
    candidate.steps = int(result.train_steps)
    candidate.max_steps = int(result.max_steps if result.max_steps is not None else result.train_steps)
    if result.status == STATUS_OK:
        candidate.ok = True
        candidate.refit_val_accuracy, candidate.refit_test_accuracy = result.val_accuracy, result.test_accuracy
        candidate.model = result.model.cpu().eval()


def reproduce(trainer: Any, task: Any, candidate: RefitCandidate, out: Any) -> None:
    """The trial's model trained again with its seed and budget; refused unless it reproduces the
    ledger row. A promoted trial (multi-fidelity) is its rung-0 trial's child trained in one go to
    its budget: what continuing it rung by rung gives (children/trainer.py)."""
    row = candidate.row
    extra = {"budget": row["budget"]} if row.get("budget") is not None else {}
    clock = time.perf_counter()
    result = trainer.train(json.loads(row["config"]), task, keep_model=True, seed=candidate.seed, **extra)
    candidate.cost_s = time.perf_counter() - clock
    if result.status != STATUS_OK:
        raise TamlError(f"retraining trial {row['trial_id']} of {out} failed ({result.status}: {result.error})")
    if (result.val_accuracy, result.test_accuracy) != (row["val_accuracy"], row["test_accuracy"]):
        raise TamlError(
            f"retraining trial {row['trial_id']} of {out} gave val/test accuracy {result.val_accuracy:.4f}/"
            f"{result.test_accuracy:.4f}, the ledger says {row['val_accuracy']:.4f}/{row['test_accuracy']:.4f}; "
            "was the search run on other task data (--data-dir) or another device?")
    candidate.ok, candidate.model = True, result.model.cpu().eval()
    candidate.refit_val_accuracy, candidate.refit_test_accuracy = result.val_accuracy, result.test_accuracy
    candidate.steps = candidate.max_steps = int(result.train_steps)


# -- the search's own inputs ---------------------------------------------------------------------------


def search_inputs(out: SearchDir, data_dir: str | None, tasks: Sequence[str] | None,
                  cache_dir: Any) -> tuple[str | None, Any, Any]:
    """(data_dir, tasks, cache_dir) as given, else as the search recorded them in settings.json:
    where it read its tasks (absolute) before the data_dir it was given, which may be relative to a
    working directory that is not this one."""
    if out.store.exists(SETTINGS_NAME):
        pipeline = out.read_json(SETTINGS_NAME)
        record = pipeline.get("_data") if isinstance(pipeline.get("_data"), dict) else {}
        data_dir = data_dir or record.get("data_dir") or pipeline.get("data_dir")
        tasks = tasks or _recorded_tasks(pipeline.get("tasks"), record)
        cache_dir = cache_dir or pipeline.get("cache_dir")
    return data_dir, tasks, cache_dir


def _recorded_tasks(tasks: Any, record: dict[str, Any]) -> Any:
    """Tasks given as .parquet paths, replaced by the absolute paths the search recorded reading."""
    files = record.get("files") if isinstance(record.get("files"), dict) else {}
    if not tasks:
        return tasks
    return [str(files[Path(t).stem]["path"]) if str(t).endswith(".parquet") and Path(t).stem in files else t
            for t in tasks]


def search_backend(body: dict[str, Any], saved: dict[str, Any], tasks: tuple[str, ...], data_dir: str | None,
                   cache_dir: Any, budget_scale: float) -> Any:
    """The trainer and tasks the search had (text or image children, study/backends.py), over the
    checkpoint's own space (a built-in one by name, since the backend chooses by it), at
    `budget_scale`."""
    from transfer_automl.space import BUILTIN_SPACES, save_space, space_from_dict
    from transfer_automl.study.backends import text_backend

    named = saved.get("space")
    if named is None or named in BUILTIN_SPACES:
        return text_backend(tasks, named or "taml-text", data_dir, cache_dir, budget_scale)
    with tempfile.TemporaryDirectory() as tmp:
        space_file = Path(tmp) / "space.yaml"
        save_space(space_from_dict(body["space"], source="checkpoint"), space_file)
        return text_backend(tasks, str(space_file), data_dir, cache_dir, budget_scale)

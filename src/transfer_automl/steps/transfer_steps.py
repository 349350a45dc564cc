"""Transfer as pipeline steps: rank a previous search's tasks against new ones, then start the
new search from it. What the `task_distance` and `transfer_init` components call.

    search_dir/distance.parquet   d[source, target] for every source of the previous search and
                                  every target (source, target, mean, std, distance)  (task_distance)
    search_dir/transfer.json      where the new search came from: source search, chosen sources,
                                  mode, embedding                                     (transfer_init)
    search_dir/settings.json, checkpoint.pt       the new search, ready for controller_step
    search_dir/reduced-space.yaml                 mode reduce_space: the space it searches

search_dir and source_search are local directories or s3:// prefixes (steps.search_dir), except
that mode reduce_space needs a local (shared) search_dir: search spaces are read from files.

Distances (`distance`):

* `fisher_ld`: the Fisher log-determinant distance from the tasks' data (text or image tasks;
  `transfer.distances.FisherLogDet.matrix` over sources + targets, mean and std over `repeats`).
* `rank_correlation`: for searches whose children are looked up in a table (no data to probe),
  or any search: the target is evaluated on up to `probe_trials` configurations each source task
  tried in the previous search (its ledger), and d[b, t] = 1 - Spearman rho of the two tasks'
  validation accuracies on the configurations both have (`transfer.distances.RankCorrelation`:
  0 same ranking, 1 unrelated, 2 reversed; std 0). The probe evaluations cost up to
  `probe_trials` children per source (lookups for a table) and are not trials of the new search.

Modes of `transfer_init`:

* `warm_start`: the previous controller for the target tasks (`ControllerSearch.transfer_from`:
  shared weights, uniform mixing at the start), each target's task embedding set to its closest
  source's (`embedding="closest"`), to the mean of its chosen sources' (`mean`), or left random.
* `reduce_space`: a fresh search (any method) over the choices the chosen sources' top-k
  configurations use (`transfer.warm_start.reduce_space`); text searches only, since a table's
  space is its columns.

Both steps are idempotent: run again with the same inputs they give the same result, and
transfer_init leaves an already initialized search as it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from transfer_automl.errors import CheckpointError, ConfigError, TaskError
from transfer_automl.steps.pipeline_steps import init_search
from transfer_automl.study import SearchDir, SearchSettings, stored_settings
from transfer_automl.study.backends import make_backend
from transfer_automl.trial_status import STATUS_OK

DISTANCE_NAME = "distance.parquet"
TRANSFER_NAME = "transfer.json"
DISTANCES = ("fisher_ld", "rank_correlation")
MODES = ("warm_start", "reduce_space")
_MIN_PROBE_CONFIGS = 3  # fewer points give no usable rank correlation


# -- the previous search -------------------------------------------------------------------------


def source_settings(source_search: str | Path | SearchDir, data_dir: str | None = None, table: str | None = None,
                    metric_columns: tuple[str, ...] | list[str] = ()) -> tuple[dict[str, Any], SearchSettings]:
    """The previous search's checkpoint body and settings (`stored_settings`); a search written
    before settings.json existed lacks where its data or table lives: `data_dir`, `table` and
    `metric_columns` fill in (and override)."""
    if str(source_search).endswith(".pt"):  # a checkpoint file: what it records of its settings
        from transfer_automl.search import load_checkpoint
        from transfer_automl.study.study import settings_from_checkpoint

        body = load_checkpoint(source_search)
        settings = settings_from_checkpoint(body, str(source_search), {"data_dir": data_dir, "table": table})
    else:
        source = SearchDir.of(source_search)
        if not source.has_checkpoint():
            raise ConfigError(f"source_search: {source} holds no search ({source.checkpoint} not found)")
        body = source.load_checkpoint()
        settings = stored_settings(source, fill={"data_dir": data_dir, "table": table})
    overrides = {"data_dir": data_dir or settings.data_dir, "table": table or settings.table,
                 "metric_columns": tuple(metric_columns) or tuple(settings.metric_columns),
                 "tasks": tuple(str(t) for t in body["tasks"]), "method": str(body["name"])}
    return body, replace(settings, **overrides)


# -- task_distance -------------------------------------------------------------------------------


def task_distance(search_dir: str | Path, target_tasks: tuple[str, ...] | list[str], source_search: str | Path,
                  distance: str = "fisher_ld", select: str = "closest", repeats: int = 3, seed: int = 0,
                  data_dir: str | None = None, table: str | None = None,
                  metric_columns: tuple[str, ...] | list[str] = (), probe_trials: int = 20,
                  transfer: str = "none") -> dict[str, list[str]]:
    """d[source, target] into search_dir/distance.parquet; returns {target: chosen sources, closest
    first}: one for select="closest", every source for "all", or the named source task.
    transfer "auto" (the new search's settings.transfer): nothing to measure ({target: []}); the
    task history's sources are weighed by the target's own results as the search runs
    (study/history.py)."""
    targets = _targets(target_tasks)
    if transfer == "auto":
        return {t: [] for t in targets}
    if not str(source_search):
        raise ConfigError("source_search: give the search to transfer from, or settings.transfer auto to learn "
                          "from the task history")
    if distance not in DISTANCES:
        raise ConfigError(f"distance must be one of {list(DISTANCES)}, got {distance!r}")
    if repeats < 1 or probe_trials < 1:
        raise ConfigError(f"repeats and probe_trials must be >= 1, got {repeats} and {probe_trials}")
    out, source = SearchDir.of(search_dir), SearchDir.of(source_search)
    body, src = source_settings(source, data_dir, table, metric_columns)
    sources = list(src.tasks)
    overlap = sorted(set(targets) & set(sources))
    if overlap:
        raise ConfigError(f"target_tasks {overlap} are already tasks of the source search {sources}; "
                          "continue that search instead (scheduled_retraining)")
    if select not in ("closest", "all") and select not in sources:
        raise ConfigError(f"select must be closest, all or a task of the source search {sources}, got {select!r}")
    if distance == "fisher_ld":
        if src.tabular:
            raise ConfigError("distance fisher_ld needs the tasks' data, and the source search looks its children "
                              "up in a table; use distance rank_correlation")
        mean, std = _fisher_ld(sources, targets, repeats, seed, src.data_dir)
    else:
        mean, std = _rank_correlation(source, src, sources, targets, seed, probe_trials, out)
    rows = [{"source": b, "target": t, "mean": float(mean[i, j]), "std": float(std[i, j]), "distance": distance}
            for i, b in enumerate(sources) for j, t in enumerate(targets)]
    _write_distances(out, rows)
    chosen = {}
    for j, t in enumerate(targets):
        ranked = [sources[i] for i in np.argsort(mean[:, j], kind="stable")]  # an undefined (NaN) one last
        chosen[t] = ranked[:1] if select == "closest" else ranked if select == "all" else [select]
    return chosen


def _fisher_ld(sources: list[str], targets: list[str], repeats: int, seed: int,
               data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    from transfer_automl.transfer.distances import FisherLogDet
    from transfer_automl.transfer.fisher import load_probe_tasks

    distance = FisherLogDet()
    probes = load_probe_tasks([*sources, *targets], modality="auto", data_dir=data_dir,
                              fisher_samples=distance.config.fisher_samples)
    matrix = distance.matrix(probes, repeats=repeats, seed=seed)
    k = len(sources)
    return matrix.mean[:k, k:], matrix.std[:k, k:]  # rows: sources, columns: targets


def _rank_correlation(source: SearchDir, src: SearchSettings, sources: list[str], targets: list[str], seed: int,
                      probe_trials: int, out: SearchDir) -> tuple[np.ndarray, np.ndarray]:
    """`transfer.distances.RankCorrelation` between each source's ledger values and the targets'
    values on (up to `probe_trials` of) the same configurations, which are evaluated here."""
    from transfer_automl.transfer.distances import RankCorrelation

    evaluations = RankCorrelation.from_ledger(source.ledger.read().to_pylist()).evaluations
    backend = make_backend(replace(src, tasks=tuple(targets)), out)  # text children cache features under out
    rng = np.random.default_rng(seed)
    probes: set[str] = set()
    for b in sources:
        configs = sorted(evaluations.get(b, {}))
        if len(configs) < _MIN_PROBE_CONFIGS:
            raise ConfigError(f"distance rank_correlation: source task {b!r} has {len(configs)} distinct successful "
                              f"configurations in {source.ledger.root}; it needs at least {_MIN_PROBE_CONFIGS}")
        probes |= set(rng.choice(configs, size=probe_trials, replace=False).tolist()
                      if len(configs) > probe_trials else configs)
    for t in targets:  # one child per (target, configuration); a failed child is left out
        results = {c: backend.trainer.train(json.loads(c), backend.task_objects[t], seed=seed) for c in sorted(probes)}
        evaluations[t] = {c: r.val_accuracy for c, r in results.items() if r.status == STATUS_OK}
    matrix = RankCorrelation(evaluations, min_common=_MIN_PROBE_CONFIGS).matrix([*sources, *targets])
    k = len(sources)
    mean = matrix.mean[:k, k:]  # rows: sources, columns: targets
    undefined = [t for j, t in enumerate(targets) if np.isnan(mean[:, j]).all()]
    if undefined:
        raise ConfigError(f"distance rank_correlation: undefined for target(s) {undefined} (fewer than "
                          f"{_MIN_PROBE_CONFIGS} shared configurations, or all values equal)")
    return mean, matrix.std[:k, k:]


# -- transfer_init -------------------------------------------------------------------------------


def transfer_init(search_dir: str | Path, target_tasks: tuple[str, ...] | list[str], source_search: str | Path,
                  sources: dict[str, list[str]], settings: Mapping[str, Any] | None = None, *,
                  mode: str = "warm_start", top_k: int = 10, children_per_round: int = 1, rounds: int = 1) -> int:
    """Create the new search for `target_tasks` in search_dir from the previous one; returns its
    step (the round the pipeline starts at). `sources`: task_distance's output. `settings`: the
    new search's settings mapping (SearchSettings' fields: seed, embedding, mixing_gamma, ...);
    those the source search ran with are inherited unless given.

    settings.transfer "auto": no source search; the new search is `taml search --transfer auto`
    over the task history (settings.history): rank-ensemble over the relevant earlier searches,
    or a scratch search without any."""
    targets = _targets(target_tasks)
    if dict(settings or {}).get("transfer") == "auto":
        given = {k: v for k, v in dict(settings or {}).items() if k not in _WARM_START_ONLY}
        step = init_search(SearchDir.of(search_dir), {**given, "tasks": targets, "init_from": "scratch"},
                           children_per_round, rounds)
        SearchDir.of(search_dir).write_json(TRANSFER_NAME, {"transfer": "auto", "history": given.get("history")},
                                            indent=1)
        return step
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
    missing = [t for t in targets if not sources.get(t)]
    if missing:
        raise ConfigError(f"sources: no source task chosen for target(s) {missing}; run task_distance first")
    given = dict(settings or {})
    out, source = SearchDir.of(search_dir), SearchDir.of(source_search)
    body, src = source_settings(source, given.get("data_dir"), given.get("table"), given.get("metric_columns", ()))
    unknown = sorted({s for t in targets for s in sources[t]} - set(src.tasks))
    if unknown:
        raise ConfigError(f"sources: {unknown} are not tasks of the source search {list(src.tasks)}")
    inherited = {k: v for k, v in src.to_dict().items() if k in _INHERITED}
    chosen = {t: list(sources[t]) for t in targets}
    if mode == "reduce_space":
        if given.get("method", src.method) != src.method:  # another method has other options
            inherited.pop("method_options", None)
        new = {**inherited, "method": src.method, **given, "tasks": targets, "init_from": "scratch",
               "space": _reduced_space_file(out, source, body, src, sources, targets, top_k)}
    else:
        if not isinstance(body.get("controller_state"), dict):
            raise CheckpointError(f"source_search {source_search} holds a {body.get('name')!r} search, which has no "
                                  "controller to warm-start; use mode reduce_space")
        if given.get("method", src.method) != src.method:
            raise ConfigError(f"method: a warm start continues the source's {src.method!r} controller, "
                              f"not {given['method']!r}")
        new = {**inherited, "method": src.method, "space": src.space, "embedding": "closest", **given,
               "tasks": targets, "init_from": "transfer", "source": source.location, "transfer_sources": chosen}
    step = init_search(out, new, children_per_round, rounds)
    out.write_json(TRANSFER_NAME, {"source_search": source.location, "sources": chosen, "mode": mode,
                                   "embedding": new.get("embedding", "random")}, indent=1)
    return step


# Settings of a controller warm start that a --transfer auto search has no use for.
_WARM_START_ONLY = ("embedding", "transfer_sources", "mixing_gamma", "mixing_samples", "source")


# What a new search takes from the search it transfers from, unless given: how its children are
# made and rewarded, and how its controller learns.
_INHERITED = ("benchmark", "table", "metric_columns", "data_dir", "budget_scale", "reward_power", "controller_lr",
              "normalization", "baseline_decay", "entropy_weight", "method_options", "top_n", "cache_dir",
              "trial_timeout")


def _reduced_space_file(out: SearchDir, source: SearchDir, body: dict[str, Any], src: SearchSettings,
                        sources: dict[str, list[str]], targets: list[str], top_k: int) -> str:
    """space.yaml of the choices that each target's chosen sources' top-k configurations use."""
    from transfer_automl.space import save_space, space_from_dict
    from transfer_automl.storage import atomic_write
    from transfer_automl.transfer.warm_start import reduce_space

    if src.tabular:
        raise ConfigError("mode reduce_space: a table's search space is its columns and cannot be reduced; "
                          "use mode warm_start")
    if not out.is_local:  # every step reads the space file by path
        raise ConfigError(f"mode reduce_space: search_dir {out} must be a directory every step can read "
                          "(a shared volume), since search spaces are read from files; use mode warm_start on S3")
    rows = source.ledger.read().to_pylist()
    chosen = {s for t in targets for s in sources[t]}
    top = []  # the union of every chosen source's top-k, as one pseudo-task
    for s in sorted(chosen):
        ok = [r for r in rows if r["task"] == s and r["status"] == STATUS_OK and _finite(r["val_accuracy"])]
        top += [{**r, "task": "_sources"} for r in sorted(ok, key=lambda r: -r["val_accuracy"])[:top_k]]
    space = space_from_dict(body["space"], source="checkpoint")
    reduced = reduce_space(space, top, "_sources", top_k=max(1, len(top)))
    reduced = type(reduced)(f"{space.name}-reduced", reduced.decisions)
    return str(atomic_write(out.where("reduced-space.yaml"), lambda tmp: save_space(reduced, tmp)))


# -- helpers -------------------------------------------------------------------------------------


def _targets(target_tasks) -> list[str]:
    targets = [str(t) for t in target_tasks]
    if not targets:
        raise ConfigError("target_tasks: give at least one target task")
    if len(set(targets)) != len(targets):
        raise ConfigError(f"target_tasks: {targets} lists a task more than once")
    return targets


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def _write_distances(out: SearchDir, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa

    schema = pa.schema([("source", pa.string()), ("target", pa.string()), ("mean", pa.float64()),
                        ("std", pa.float64()), ("distance", pa.string())])
    out.store.write_parquet(DISTANCE_NAME, pa.Table.from_pylist(rows, schema=schema))


# -- `taml transfer` ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferSettings:
    """Everything one `taml transfer` does."""

    target: str  # the new task (a text task name in data_dir, or a .parquet path)
    source: str  # a search directory (checkpoint.pt, ledger/) or a checkpoint file
    out: str  # where the warm-started search (or, with reduce_space, space.yaml) is written
    select: str = "closest"  # closest | all | <a source task>
    embedding: str = "closest"  # the target's embedding: closest source's row, mean of the selected, or random
    reduce_space: bool = False  # write the closest source's top-k space for a fresh search instead
    top_k: int = 10  # configurations of the closest source that define the reduced space
    distance: str = "fisher_ld"  # registered task distance
    repeats: int = 3  # probe initialisations averaged per distance (paper: 10)
    data_dir: str | None = None  # where task names resolve
    seed: int = 0  # probes, the new search's initialization and sampling
    mixing_gamma: float = 0.1  # initial uniform-mixing weight of the warm-started policy ...
    mixing_samples: int = 100  # ... decaying linearly to 0 over this many samples


@dataclass
class TransferResult:
    sources: list[tuple[str, float]]  # chosen source tasks and d[source, target], closest first
    method: str  # the pretrained search's method
    checkpoint: Path | str | None  # the warm-started search (None with reduce_space)
    space_file: Path | None  # the reduced space (reduce_space only)
    next_command: str
    ranking: list[tuple[str, float]] = field(default_factory=list)  # every source task, closest first


def run_transfer(settings: TransferSettings) -> TransferResult:
    """Rank the pretrained search's tasks by distance to the target, then either start the
    target's search from the pretrained controller (`Study.open`, init_from=transfer: the search
    directory at step 0, continued by `taml search --out OUT --resume --trials N`) or write the
    closest source's top-k space for a fresh search (reduce_space)."""
    from transfer_automl.space import save_space, space_from_dict
    from transfer_automl.storage import atomic_write
    from transfer_automl.study import Study
    from transfer_automl.transfer.warm_start import (
        SELECTIONS,
        choose_sources,
        reduce_space,
        select_sources,
    )

    if settings.top_k < 1 or settings.repeats < 1:
        raise ConfigError(f"top_k and repeats must be >= 1, got {settings.top_k} and {settings.repeats}")
    out = SearchDir.of(settings.out)
    if out.has_checkpoint() or out.ledger.files():
        raise ConfigError(f"out: {out} already holds a search; choose another --out")
    source_dir = Path(settings.source).parent if str(settings.source).endswith(".pt") else settings.source
    body, src = source_settings(settings.source, settings.data_dir)
    if not settings.reduce_space and not isinstance(body.get("controller_state"), dict):
        raise CheckpointError(f"--from {settings.source} holds a {src.method!r} search, which has no controller to "
                              "warm-start; use --reduce-space for a fresh search")
    if settings.select not in SELECTIONS and settings.select not in src.tasks:
        raise TaskError(f"--select {settings.select!r} is not closest, all or a task of the pretrained search "
                        f"{list(src.tasks)}")
    # Every source is ranked, so the user sees the whole order (a named --select probes the others too).
    ranking = select_sources(settings.target, list(src.tasks), settings.distance, "all",
                             repeats=settings.repeats, data_dir=settings.data_dir, seed=settings.seed)
    sources = choose_sources(ranking, settings.select)
    data = f" --data-dir {settings.data_dir}" if settings.data_dir else ""
    if settings.reduce_space:
        source = SearchDir.of(source_dir)
        if not source.ledger.files():
            raise ConfigError(f"--reduce-space needs the pretrained search's ledger, and {source.ledger.root} has none")
        space = space_from_dict(body["space"], source=str(source.checkpoint))
        reduced = reduce_space(space, source.ledger.read().to_pylist(), sources[0][0], settings.top_k)
        Path(settings.out).mkdir(parents=True, exist_ok=True)
        space_file = atomic_write(Path(settings.out) / "space.yaml", lambda tmp: save_space(reduced, tmp))
        command = (f"taml search --tasks {settings.target} --space {space_file} --out {settings.out} --method <any> "
                   f"--trials <n>{data}")
        return TransferResult(sources, src.method, None, space_file, command, ranking)
    inherited = {k: v for k, v in src.to_dict().items() if k in (*_INHERITED, "batch_size") and k != "data_dir"}
    study = Study.open({
        **inherited, "tasks": [settings.target], "trials": 1, "out": settings.out, "method": src.method,
        "space": src.space, "init_from": "transfer", "source": str(settings.source), "embedding": settings.embedding,
        "transfer_sources": {settings.target: [name for name, _ in sources]}, "seed": settings.seed,
        "mixing_gamma": settings.mixing_gamma, "mixing_samples": settings.mixing_samples,
        "data_dir": settings.data_dir, "search_id": f"{out.name}-transfer", "progress": False,
    })
    command = f"taml search --out {settings.out} --resume --trials <n>"
    return TransferResult(sources, src.method, study.directory.checkpoint, None, command, ranking)

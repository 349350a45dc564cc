"""Which source task to transfer from (`make bench-transfer`; minutes, never a timed test).

Leave one task out. For each benchmark, held-out target task h and seed, every search gets T
trials on h (a trial = one configuration evaluated on h) and we record the best validation value
after each trial. Strategies:

* `rs`: random search on h (it defines the target, below);
* `scratch`: the controller search (`base`, PQT by default) from a fresh controller. Every
  controller here uses Adam step `controller_lr` = 0.01 and updates after `batch_size` = 5 trials:
  with the papers' 5e-4 a 60-trial pretraining leaves the policy at its initialisation, and every
  source would transfer the same controller;
* warm mode (Transfer AutoML): the controller pretrained on ONE source s (`pretrain_trials`
  trials), transferred to h (fresh task embedding, uniform mixing 0.1 -> 0 over 100 samples);
  `all`: pretrained on every other task (multitask, `pretrain_trials` per task);
* reduce mode (LD-NAS, "the closest task's architecture defines the search space"): random
  search in the space reduced to the choices of s's top-k configurations (warm_start.reduce_space;
  the source is a finished task, so its top-k come from its table column); `all`: the choices of
  every source's top-k.

A source is picked per distance as `closest` (argmin_s d[s, h]) or `farthest`; `random` is the
expected result of a uniformly drawn source (the mean over sources); `best source` is the source
with the fewest trials on average in hindsight (an oracle, for scale). Distances:

* `fisher_ld` (image tasks, and the text tasks of `taml-text-real`: it needs data): the Fisher
  log-determinant distance of probe networks (transfer/fisher.py), mean over `ld_repeats`
  initialisations;
* `rank_correlation@k`: 1 - Spearman rho between h's values on its first k random trials
  (`probe_trials`) and the sources' values on the same configurations (sources are finished
  tasks: their table is known). Those k trials are a measuring cost, not counted below;
* `rank_correlation (full table)`: the same on every configuration (an oracle, not usable on a
  new task; it says whether the idea could work);
* `embedding_cosine@k`: 1 - cosine of task embeddings of the multitask controller (pretrained on
  the sources) continued on sources + h until h had k trials.

Target and measure: target(h) = the median over seeds of the best value random search reaches in
T trials; trials-to-target = the first trial whose best-so-far reaches it. A run that never
reaches it counts as T + 1 (so a mean with misses is a lower bound; the fraction reached is
reported). Mean ± standard error over seeds. "Does the distance predict useful transfer?":
for each target, Spearman rho between d[s, h] and the mean trials-to-target of transfer from s
(positive: closer sources need fewer trials), averaged over targets; and how often `closest` is
the best source.

Image tasks have no published table, so `images` is tabulated here first: every configuration of
`fuse-image` (search/fuse.py; 216 small MLPs and CNNs over 8x8 pooled pixels) trained alone once
per task (`train_candidate`, seed = row), validation and test accuracy cached in
`<out>/image_table.parquet`. Searches on images are then table lookups of real trainings.
The FUSE part runs FUSE itself on a few image targets in the full space and in the spaces reduced
to the LD-closest and LD-farthest sources' top-k configurations.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing as mp
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transfer_automl.errors import ConfigError

IMAGE_BENCHMARK = "images"
TABLE_BENCHMARKS = ("transnasbench101-micro", "nasbench201", "taml-text-real")
# Benchmarks whose tasks have data, so the Fisher LD distance applies: probe modality.
LD_MODALITY = {IMAGE_BENCHMARK: "image", "taml-text-real": "text"}
IMAGE_TASKS = ("digits_optdigits", "digits_optdigits:is0", "digits_optdigits:is6", "digits_optdigits:odd_even",
               "mnist_test", "mnist_test:is0", "mnist_test:odd_even")
IMAGE_TABLE_FILE = "image_table.parquet"
MODES = ("warm", "reduce")
BASELINE = {"warm": "scratch", "reduce": "rs"}  # what each mode's transfer is compared with


@dataclass(frozen=True)
class SelectionSettings:
    """One `bench-transfer` run; every field is printed with the results."""

    out: str
    benchmarks: tuple[str, ...] = (IMAGE_BENCHMARK, *TABLE_BENCHMARKS[:2])
    seeds: int = 8
    trials: int = 60  # T: trials on the target per search
    pretrain_trials: int = 60  # controller trials per source task before transfer
    batch_size: int = 5  # trials per controller update (pretraining and target searches alike)
    base: str = "pqt"  # the controller search pretrained, transferred and run from scratch
    controller_lr: float = 0.01  # its Adam step size: the papers' 1e-4..5e-4 assume thousands of trials
    probe_trials: int = 20  # k: target trials behind rank_correlation@k and embedding_cosine@k
    top_k: int = 10  # reduce mode: the source configurations that define the reduced space
    mixing_gamma: float = 0.1  # uniform mixing after transfer ...
    mixing_samples: int = 100  # ... decaying to 0 over this many samples
    ld_repeats: int = 10  # probe initialisations of the Fisher LD distance
    image_tasks: tuple[str, ...] = IMAGE_TASKS
    image_steps: int = 100  # training steps of one image child (batch 64, Adam)
    fuse_targets: tuple[str, ...] = ("mnist_test", "digits_optdigits:odd_even")
    fuse_seeds: int = 3
    fuse_candidates: int = 4
    fuse_budget: int = 16  # candidate trainings per FUSE run
    workers: int = 2
    data_dir: str | None = None  # benchmark tables
    image_dir: str | None = None  # image task files
    text_dir: str | None = None  # text task files (taml-text-real's LD probes)

    def validate(self) -> None:
        unknown = sorted(set(self.benchmarks) - {IMAGE_BENCHMARK, *TABLE_BENCHMARKS})
        if unknown:
            raise ConfigError(f"benchmarks: unknown {unknown}; available: {[IMAGE_BENCHMARK, *TABLE_BENCHMARKS]}")
        for name in ("seeds", "trials", "pretrain_trials", "batch_size", "probe_trials", "top_k", "ld_repeats", "image_steps",
                     "workers", "fuse_candidates", "fuse_budget"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.controller_lr > 0:
            raise ConfigError(f"controller_lr must be > 0, got {self.controller_lr}")
        if self.base not in ("reinforce", "ppo", "pqt", "transformer"):
            raise ConfigError(f"base must be a controller search (reinforce, ppo, pqt, transformer), got {self.base!r}")
        if len(self.image_tasks) < 3:
            raise ConfigError(f"image_tasks: need at least 3 (a target and two sources), got {list(self.image_tasks)}")


# -- the image table ------------------------------------------------------------------------------

_SPLITS: dict[tuple[str, str | None], Any] = {}  # (task, image dir) -> ImageSplits, per worker


def _image_cells(args) -> list[tuple[str, int, float, float, float]]:
    task, rows, steps, image_dir = args
    import torch

    from transfer_automl.search.fuse import (
        FUSE_IMAGE_SPACE,
        TrainConfig,
        load_image_splits,
        train_candidate,
    )

    torch.set_num_threads(1)
    if (task, image_dir) not in _SPLITS:
        _SPLITS[(task, image_dir)] = load_image_splits(task, image_dir)
    data = _SPLITS[(task, image_dir)]
    out = []
    for row, actions in rows:
        r = train_candidate(FUSE_IMAGE_SPACE.decode(actions), data, TrainConfig(steps=steps), seed=row)
        out.append((task, row, r["val_accuracy"], r["test_accuracy"], r["duration_s"]))
    return out


def image_table(settings: SelectionSettings, progress: bool = True):
    """Every fuse-image configuration trained on every image task: a TableBenchmark, cached."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from transfer_automl.search.fuse import FUSE_IMAGE_SPACE
    from transfer_automl.storage import atomic_write
    from transfer_automl.tasks.benchmarks import TableBenchmark

    space = FUSE_IMAGE_SPACE
    actions = [list(a) for a in itertools.product(*(range(c) for c in space.cardinalities))]
    tasks = list(settings.image_tasks)
    stamp = json.dumps({"space": space.fingerprint(), "tasks": tasks, "steps": settings.image_steps})
    path = Path(settings.out) / IMAGE_TABLE_FILE
    if path.is_file() and (pq.read_schema(path).metadata or {}).get(b"taml") == stamp.encode():
        table = pq.read_table(path)
        metric = {t: np.asarray(table.column(f"{t}/val").to_pylist()) for t in tasks}
        test = {t: np.asarray(table.column(f"{t}/test").to_pylist()) for t in tasks}
        cpu_s = float((pq.read_schema(path).metadata or {}).get(b"cpu_s", b"0"))
    else:
        chunk = 24
        jobs = [(t, list(enumerate(actions))[i:i + chunk], settings.image_steps, settings.image_dir)
                for t in tasks for i in range(0, len(actions), chunk)]
        metric = {t: np.zeros(len(actions)) for t in tasks}
        test = {t: np.zeros(len(actions)) for t in tasks}
        cpu_s = 0.0
        for task, row, val, tst, secs in _pool_map(_image_cells, jobs, settings.workers, progress, "image table"):
            metric[task][row], test[task][row] = val, tst
            cpu_s += secs
        columns = {d.name: [a[j] for a in actions] for j, d in enumerate(space.decisions)}
        for t in tasks:
            columns[f"{t}/val"], columns[f"{t}/test"] = metric[t].tolist(), test[t].tolist()
        table = pa.Table.from_pydict(columns).replace_schema_metadata({"taml": stamp, "cpu_s": str(cpu_s)})
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    bench = TableBenchmark(name=IMAGE_BENCHMARK, space=space, tasks=tasks, row_actions=np.asarray(actions),
                           metric=metric, test_metric=test, source=str(path))
    bench.cpu_s = cpu_s  # training time of the whole table, for the report
    return bench


def _pool_map(fn, jobs, workers: int, progress: bool, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), disable=not progress, unit="job", desc=desc)
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for result in pool.imap_unordered(fn, jobs):
                yield from result
                bar.update()
    else:
        for job in jobs:
            yield from fn(job)
            bar.update()
    bar.close()


# -- one seed of one benchmark: every strategy for every held-out task ----------------------------

_BACKENDS: dict[str, Any] = {}  # benchmark name -> its study backend, once per worker process


def _backend(settings: SelectionSettings, name: str):
    from benchmarks.studies import backend_of, named_backend

    if name not in _BACKENDS:
        if name == IMAGE_BENCHMARK:
            _BACKENDS[name] = backend_of(image_table(settings, progress=False))
        else:
            _BACKENDS[name] = named_backend(name, settings.data_dir)
    return _BACKENDS[name]


def _bench(settings: SelectionSettings, name: str):
    return _backend(settings, name).trainer.benchmark


def _controller(settings: SelectionSettings, seed: int, search_id: str) -> dict[str, Any]:
    """The settings of a `base` controller search (`taml search --method <base> --controller-lr ...`)."""
    return {"method": settings.base, "seed": seed, "controller_lr": settings.controller_lr,
            "batch_size": settings.batch_size, "search_id": search_id}


def _transferred(settings: SelectionSettings, seed: int, search_id: str, source) -> dict[str, Any]:
    """A `base` controller search warm-started from the pretrained study `source` (init_from=transfer)."""
    return {**_controller(settings, seed, search_id), "init_from": "transfer", "source": source.search.search_id,
            "mixing_gamma": settings.mixing_gamma, "mixing_samples": settings.mixing_samples}


def _run(search: dict[str, Any], backend, task: str, trials: int, source=None):
    """An in-memory study until `task` has had `trials` trials: (the study, the best-so-far on
    `task` after each of them; other tasks' trials are not counted)."""
    from benchmarks.studies import OPEN_ENDED, best_so_far, each_task_has, run_study

    study, done = run_study({"trials": OPEN_ENDED, **search}, backend, source=source,
                            until=each_task_has(trials, [task]))
    return study, best_so_far(done, task, trials)


def _pretrain(settings: SelectionSettings, backend, sources: list[str], seed: int):
    """The `base` controller searched on `sources` (`pretrain_trials` each): a study to transfer from."""
    from benchmarks.studies import on_tasks, run_study

    search = _controller(settings, seed, f"pre-{'+'.join(sources)}-{seed}")
    study, _ = run_study({**search, "trials": settings.pretrain_trials * len(sources)}, on_tasks(backend, sources))
    return study


def _reduced_rs(settings: SelectionSettings, backend, sources: list[str], target: str, seed: int) -> list[float]:
    """Random search on `target` in the space of the sources' top-k configurations."""
    from benchmarks.studies import on_tasks
    from transfer_automl.transfer.warm_start import reduce_space

    bench = backend.trainer.benchmark
    rows = []
    for s in sources:
        for r in np.argsort(-bench.metric[s], kind="stable")[:settings.top_k]:
            config = bench.space.decode(bench.row_actions[r].tolist())
            rows.append({"task": "sources", "status": "ok", "val_accuracy": float(bench.metric[s][r]),
                         "config": json.dumps(config), "trial_id": f"{s}/{r}"})
    space = reduce_space(bench.space, rows, "sources", top_k=len(rows))
    search = {"method": "rs", "seed": seed, "batch_size": 1, "search_id": f"reduce-{target}-{seed}"}
    return _run(search, on_tasks(backend, [target], space), target, settings.trials)[1]


def _cosine_distances(search, sources: list[str], target: str) -> dict[str, float]:
    from transfer_automl.transfer.warm_start import task_embedding_key

    state = search.controller.state_dict()
    e = state[task_embedding_key(state)].detach().double().numpy()  # [tasks, E]
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    t = search.tasks.index(target)
    return {s: float(1.0 - unit[search.tasks.index(s)] @ unit[t]) for s in sources}


def run_seed(settings: SelectionSettings, bench_name: str, seed: int) -> list[dict[str, Any]]:
    """Every strategy on every held-out task of one benchmark with one seed: curve and distance rows."""
    import torch

    torch.set_num_threads(1)
    from benchmarks.studies import on_tasks

    backend = _backend(settings, bench_name)
    bench = backend.trainer.benchmark
    tasks = list(bench.tasks)
    single = {s: _pretrain(settings, backend, [s], seed) for s in tasks}
    out: list[dict[str, Any]] = []

    def curve(strategy: str, values: list[float], target: str, source: str = "") -> None:
        out.append({"kind": "curve", "benchmark": bench_name, "task": target, "seed": seed,
                    "strategy": strategy, "source": source, "best_so_far": values})

    for h in tasks:
        sources = [s for s in tasks if s != h]
        target = on_tasks(backend, [h])

        def transfer(pretrained, tag: str, h=h, target=target) -> list[float]:
            search = _transferred(settings, seed + 10_000, f"{tag}-{h}-{seed}", pretrained)
            return _run(search, target, h, settings.trials, source=pretrained)[1]

        rs = {"method": "rs", "seed": seed, "batch_size": 1, "search_id": f"rs-{h}-{seed}"}
        curve("rs", _run(rs, target, h, settings.trials)[1], h)
        curve("scratch", _run(_controller(settings, seed, f"scratch-{h}-{seed}"), target, h, settings.trials)[1], h)
        for s in sources:
            curve("warm", transfer(single[s], "warm"), h, s)
            curve("reduce", _reduced_rs(settings, backend, [s], h, seed), h, s)
        multi = _pretrain(settings, backend, sources, seed)
        curve("warm", transfer(multi, "warm-all"), h, "all")
        curve("reduce", _reduced_rs(settings, backend, sources, h, seed), h, "all")

        # Distances that need a few target trials: k random configurations; the multitask
        # controller continued on sources + h until h had k trials.
        rng = np.random.default_rng([seed, tasks.index(h)])
        probe = rng.choice(bench.num_rows, size=min(settings.probe_trials, bench.num_rows), replace=False)
        for s in sources:
            out.append({"kind": "distance", "benchmark": bench_name, "task": h, "seed": seed, "source": s,
                        "distance": "rank_correlation@k",
                        "value": 1.0 - _spearman(bench.metric[s][probe], bench.metric[h][probe])})
        joint, _ = _run(_transferred(settings, seed + 20_000, f"embed-{h}-{seed}", multi),
                        on_tasks(backend, [*sources, h]), h, settings.probe_trials, source=multi)
        for s, v in _cosine_distances(joint.search, sources, h).items():
            out.append({"kind": "distance", "benchmark": bench_name, "task": h, "seed": seed, "source": s,
                        "distance": "embedding_cosine@k", "value": v})
    return out


def _spearman(a, b) -> float:
    from transfer_automl.transfer.distances import spearman

    rho = spearman(a, b)
    return 0.0 if math.isnan(rho) else rho  # a constant probe carries no ranking: rho 0


def _run_seed_star(args) -> list[dict[str, Any]]:
    """One (benchmark, seed) job, its rows kept in <out>/jobs/ so that a rerun skips it."""
    settings, name, seed = args
    stamp = {k: v for k, v in asdict(settings).items() if k not in ("workers", "seeds", "fuse_seeds", "fuse_targets", "benchmarks")}
    path = Path(settings.out) / "jobs" / f"{name}-seed{seed}.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("settings") == json.loads(json.dumps(stamp)):
            return saved["rows"]
    rows = run_seed(settings, name, seed)
    from transfer_automl.storage import atomic_write

    body = json.dumps({"settings": stamp, "rows": rows})
    atomic_write(path, lambda tmp: Path(tmp).write_text(body, encoding="utf-8"))
    return rows


def _fixed_distances(settings: SelectionSettings, bench) -> dict[str, np.ndarray]:
    """Distances that do not depend on the seed: [K, K] matrices (rows: source, columns: target)."""
    from transfer_automl.transfer.distances import FisherLogDet, RankCorrelation

    out = {"rank_correlation (full table)": RankCorrelation.from_table(bench).matrix(bench.tasks).mean}
    if bench.name in LD_MODALITY:
        from transfer_automl.transfer.fisher import load_probe_tasks

        modality = LD_MODALITY[bench.name]
        probes = load_probe_tasks(list(bench.tasks), modality=modality,
                                  data_dir=settings.image_dir if modality == "image" else settings.text_dir)
        out["fisher_ld"] = FisherLogDet().matrix(probes, repeats=settings.ld_repeats, seed=0).mean
    return out


# -- FUSE on image targets: full space vs the LD-closest / LD-farthest source's reduced space ------


def _fuse_job(args) -> list[dict[str, Any]]:
    settings, target, label, space_dict, seed = args
    import torch

    torch.set_num_threads(1)
    from transfer_automl.search.fuse import FuseSettings, fuse_search, load_image_splits
    from transfer_automl.space import space_from_dict

    fuse = FuseSettings(task=target, out="", candidates=settings.fuse_candidates, budget=settings.fuse_budget,
                        steps=settings.image_steps, seed=seed)
    key = (target, settings.image_dir)
    if key not in _SPLITS:
        _SPLITS[key] = load_image_splits(target, settings.image_dir)
    result = fuse_search(fuse, _SPLITS[key], space_from_dict(space_dict))
    return [{"kind": "fuse", "task": target, "space": label, "seed": seed, "wall_s": result.wall_s,
             "config": json.dumps(result.best["config"], sort_keys=True),
             "val_accuracy": result.best["val_accuracy"], "test_accuracy": result.best["test_accuracy"]}]


def fuse_jobs(settings: SelectionSettings, bench, ld: np.ndarray) -> list[tuple]:
    from transfer_automl.transfer.warm_start import reduce_space

    tasks = list(bench.tasks)
    jobs = []
    for target in settings.fuse_targets:
        if target not in tasks:
            raise ConfigError(f"fuse_targets: {target!r} is not one of the image tasks {tasks}")
        j = tasks.index(target)
        d = {s: ld[i, j] for i, s in enumerate(tasks) if s != target}
        spaces = {"full": bench.space}
        for label, s in (("closest", min(d, key=d.get)), ("farthest", max(d, key=d.get))):
            rows = [{"task": s, "status": "ok", "val_accuracy": float(bench.metric[s][r]), "trial_id": str(r),
                     "config": json.dumps(bench.space.decode(bench.row_actions[r].tolist()))}
                    for r in np.argsort(-bench.metric[s], kind="stable")[:settings.top_k]]
            spaces[f"{label} ({s})"] = reduce_space(bench.space, rows, s, settings.top_k)
        jobs += [(settings, target, label, space.to_dict(), seed)
                 for label, space in spaces.items() for seed in range(settings.fuse_seeds)]
    return jobs


# -- the whole benchmark --------------------------------------------------------------------------


def run_selection(settings: SelectionSettings, progress: bool = True) -> dict[str, Any]:
    settings.validate()
    started = time.perf_counter()
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    fixed: dict[str, dict[str, np.ndarray]] = {}
    benches = {}
    timings: dict[str, float] = {}
    for name in settings.benchmarks:
        t0 = time.perf_counter()
        if name == IMAGE_BENCHMARK:  # built here with a progress bar; the workers read the cached file
            from benchmarks.studies import backend_of

            _BACKENDS[name] = backend_of(image_table(settings, progress))
        bench = benches[name] = _bench(settings, name)
        timings[f"{name}: table"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fixed[name] = _fixed_distances(settings, bench)
        timings[f"{name}: fixed distances"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        jobs = [(settings, name, seed) for seed in range(settings.seeds)]
        rows += list(_pool_map(_run_seed_star, jobs, settings.workers, progress, name))
        timings[f"{name}: searches"] = time.perf_counter() - t0
    fuse_rows: list[dict[str, Any]] = []
    if IMAGE_BENCHMARK in benches and settings.fuse_targets and settings.fuse_seeds:
        t0 = time.perf_counter()
        jobs = fuse_jobs(settings, benches[IMAGE_BENCHMARK], fixed[IMAGE_BENCHMARK]["fisher_ld"])
        fuse_rows = list(_pool_map(_fuse_job, jobs, settings.workers, progress, "fuse"))
        timings["images: FUSE"] = time.perf_counter() - t0
    wall = time.perf_counter() - started
    summary = summarize(rows, fixed, benches, settings)
    _write(out, rows, fuse_rows, fixed, benches)
    text = render(summary, fuse_rows, benches, settings, wall, timings)
    (out / "summary.md").write_text(text, encoding="utf-8")
    return {"summary": summary, "fuse": fuse_rows, "wall_s": wall, "timings": timings, "out": str(out), "text": text}


def _write(out: Path, rows, fuse_rows, fixed, benches) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from transfer_automl.storage import atomic_write

    curves = [r for r in rows if r["kind"] == "curve"]
    dists = [r for r in rows if r["kind"] == "distance"]
    for name, matrices in fixed.items():
        tasks = list(benches[name].tasks)
        for dname, m in matrices.items():
            dists += [{"kind": "distance", "benchmark": name, "task": t, "seed": -1, "source": s, "distance": dname,
                       "value": float(m[i, j])} for i, s in enumerate(tasks) for j, t in enumerate(tasks) if i != j]
    for fname, data in (("curves.parquet", curves), ("distances.parquet", dists), ("fuse.parquet", fuse_rows)):
        if data:
            table = pa.Table.from_pylist(data)
            atomic_write(out / fname, lambda tmp, table=table: pq.write_table(table, tmp))


# -- analysis -------------------------------------------------------------------------------------


def trials_to_target(curve: list[float], target: float) -> int:
    """1-based index of the first trial whose best-so-far reaches `target`; len + 1 if never."""
    hit = np.flatnonzero(np.asarray(curve) >= target)
    return int(hit[0]) + 1 if len(hit) else len(curve) + 1


def _mean_se(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0
    return float(a.mean()), se


def summarize(rows, fixed, benches, settings: SelectionSettings) -> dict[str, Any]:
    """Per benchmark: per (mode, strategy, task) trials-to-target per seed; per distance its
    choices and how well it predicts transfer."""
    from transfer_automl.transfer.distances import spearman

    summary: dict[str, Any] = {}
    seeds = list(range(settings.seeds))
    for name, bench in benches.items():
        tasks = list(bench.tasks)
        curves = [r for r in rows if r["kind"] == "curve" and r["benchmark"] == name]
        rs_best = {h: [c["best_so_far"][-1] for c in curves if c["task"] == h and c["strategy"] == "rs"] for h in tasks}
        target = {h: float(np.median(v)) for h, v in rs_best.items()}
        ttt: dict[tuple[str, str, str], dict[int, int]] = {}  # (strategy, source, task) -> seed -> trials
        for c in curves:
            ttt.setdefault((c["strategy"], c["source"], c["task"]), {})[c["seed"]] = trials_to_target(c["best_so_far"], target[c["task"]])
        # distance per (name, task, seed) -> {source: d}
        dist: dict[str, dict[tuple[str, int], dict[str, float]]] = {}
        for r in rows:
            if r["kind"] == "distance" and r["benchmark"] == name:
                dist.setdefault(r["distance"], {}).setdefault((r["task"], r["seed"]), {})[r["source"]] = r["value"]
        for dname, m in fixed[name].items():
            for j, h in enumerate(tasks):
                column = {s: float(m[i, j]) for i, s in enumerate(tasks) if s != h}
                dist[dname] = {**dist.get(dname, {}), **{(h, seed): column for seed in seeds}}

        table: dict[str, dict[str, dict[str, list[int]]]] = {}  # mode -> strategy -> task -> per-seed trials
        predict: dict[str, dict[str, dict[str, float]]] = {}  # mode -> distance -> stats
        for mode in MODES:
            strategy, rows_of = mode, {}
            rows_of[BASELINE[mode]] = {h: [ttt[(BASELINE[mode], "", h)][s] for s in seeds] for h in tasks}
            rows_of["all sources"] = {h: [ttt[(strategy, "all", h)][s] for s in seeds] for h in tasks}
            per_source = {h: {s: [ttt[(strategy, s, h)][k] for k in seeds] for s in tasks if s != h} for h in tasks}
            rows_of["random source"] = {h: [float(np.mean([per_source[h][s][k] for s in per_source[h]])) for k in seeds]
                                        for h in tasks}
            best_src = {h: min(per_source[h], key=lambda s, h=h: np.mean(per_source[h][s])) for h in tasks}
            rows_of["best source (hindsight)"] = {h: per_source[h][best_src[h]] for h in tasks}
            predict[mode] = {}
            for dname in sorted(dist):
                for pick, fn in (("closest", min), ("farthest", max)):
                    rows_of[f"{pick}: {dname}"] = {
                        h: [per_source[h][fn(dist[dname][(h, k)], key=dist[dname][(h, k)].get)][k] for k in seeds]
                        for h in tasks}
                rhos, hits, gains = [], [], []
                for h in tasks:
                    srcs = list(per_source[h])
                    mean_d = [np.mean([dist[dname][(h, k)][s] for k in seeds]) for s in srcs]
                    mean_t = [np.mean(per_source[h][s]) for s in srcs]
                    rho = spearman(mean_d, mean_t)
                    if not math.isnan(rho):
                        rhos.append(rho)
                    closest = [min(dist[dname][(h, k)], key=dist[dname][(h, k)].get) for k in seeds]
                    hits.append(np.mean([c == best_src[h] for c in closest]))
                    gains.append(np.mean(rows_of["random source"][h]) - np.mean(rows_of[f"closest: {dname}"][h]))
                predict[mode][dname] = {"rho": float(np.mean(rhos)) if rhos else math.nan, "rho_tasks": len(rhos),
                                        "hit_rate": float(np.mean(hits)), "gain_vs_random": float(np.mean(gains))}
            table[mode] = rows_of
        summary[name] = {"tasks": tasks, "target": target, "table": table, "predict": predict,
                         "trials": settings.trials}
    return summary


def _cell(values, cap: int, fraction: bool = True) -> str:
    mean, se = _mean_se(values)
    reached = np.mean(np.asarray(values) <= cap)
    return f"{mean:.0f} ± {se:.0f}" + ("" if reached == 1 or not fraction else f" ({reached:.0%})")


def render(summary, fuse_rows, benches, settings: SelectionSettings, wall_s: float, timings: dict[str, float]) -> str:
    s = settings
    lines = ["# Transfer-source selection", "",
             f"Wall time {wall_s:.0f} s on {s.workers} worker(s) ("
             + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ").", "",
             f"Settings: {json.dumps(asdict(s))}", ""]
    for name, b in summary.items():
        tasks, cap = b["tasks"], b["trials"]
        lines += [f"## {name}", "", "Target per task (median over seeds of random search's best after "
                  f"{cap} trials): " + ", ".join(f"{h} {b['target'][h]:.4g}" for h in tasks), ""]
        for mode in MODES:
            rows_of = b["table"][mode]
            title = ("controller pretrained on the source(s), transferred (warm)" if mode == "warm"
                     else "random search in the source(s)' top-k reduced space (reduce)")
            lines += [f"### Trials to target, {title}", "",
                      f"mean ± stderr over {s.seeds} seeds; (x%) = runs that reached the target (random source: "
                      f"the mean over sources, no fraction); a miss counts {cap + 1}", "",
                      "| strategy | all tasks | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
            for strategy, per_task in rows_of.items():
                overall = [np.mean([per_task[h][k] for h in tasks]) for k in range(s.seeds)]
                mean, se = _mean_se(overall)
                lines.append(f"| {strategy} | {mean:.1f} ± {se:.1f} | "
                             + " | ".join(_cell(per_task[h], cap, strategy != "random source") for h in tasks) + " |")
            lines.append("")
        lines += ["### Does the distance predict useful transfer?", "",
                  "rho: Spearman between d[s, h] and mean trials-to-target from source s, mean over targets "
                  "(> 0: closer sources need fewer trials); hit: how often `closest` is the hindsight-best source; "
                  "gain: trials saved by `closest` over a random source (mean over targets).", "",
                  "| distance | warm rho | warm hit | warm gain | reduce rho | reduce hit | reduce gain |",
                  "|---|---|---|---|---|---|---|"]
        for dname in b["predict"]["warm"]:
            w, r = b["predict"]["warm"][dname], b["predict"]["reduce"][dname]
            lines.append(f"| {dname} | {w['rho']:+.2f} | {w['hit_rate']:.0%} | {w['gain_vs_random']:+.1f} | "
                         f"{r['rho']:+.2f} | {r['hit_rate']:.0%} | {r['gain_vs_random']:+.1f} |")
        lines.append("")
    if fuse_rows:
        lines += ["## FUSE on image targets: full space vs the LD-closest / LD-farthest source's reduced space", "",
                  f"C = {s.fuse_candidates} candidates, {s.fuse_budget} candidate trainings "
                  f"({s.fuse_budget // s.fuse_candidates} rounds), {s.image_steps} steps per round; c* scored alone "
                  f"after its last round; mean ± stderr over {s.fuse_seeds} seeds. Table best = the best cell of the "
                  "image table (validation) and its test accuracy; c* alone = c*'s own cell of the table (the same configuration "
                  "trained alone).", "",
                  "| target | space | c* val acc | c* test acc | c* alone val (test) | wall s | table best val (test) |",
                  "|---|---|---|---|---|---|---|"]
        bench = benches.get(IMAGE_BENCHMARK)
        for target in dict.fromkeys(r["task"] for r in fuse_rows):
            best = bench.best_actions(target)
            ref = f"{bench.value(target, best):.4f} ({bench.test_value(target, best):.4f})"
            for label in dict.fromkeys(r["space"] for r in fuse_rows if r["task"] == target):
                mine = [r for r in fuse_rows if r["task"] == target and r["space"] == label]
                v, t, w = (_mean_se([r[k] for r in mine]) for k in ("val_accuracy", "test_accuracy", "wall_s"))
                alone = [bench.space.encode(json.loads(r["config"])) for r in mine]
                av = _mean_se([bench.value(target, a) for a in alone])
                at = _mean_se([bench.test_value(target, a) for a in alone])
                lines.append(f"| {target} | {label} | {v[0]:.4f} ± {v[1]:.4f} | {t[0]:.4f} ± {t[1]:.4f} | "
                             f"{av[0]:.4f} ({at[0]:.4f}) | {w[0]:.0f} | {ref} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def rerender(out: str | Path) -> str:
    """Rewrite `<out>/summary.md` from the Parquet results (the settings and wall-time lines of
    the summary it replaces are kept): a change of the report needs no rerun."""
    import pyarrow.parquet as pq

    out = Path(out)
    old = (out / "summary.md").read_text(encoding="utf-8").splitlines()
    raw = json.loads(next(line for line in old if line.startswith("Settings: "))[len("Settings: "):])
    settings = SelectionSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    wall_line = next(line for line in old if line.startswith("Wall time"))
    rows = pq.read_table(out / "curves.parquet").to_pylist() + pq.read_table(out / "distances.parquet").to_pylist()
    fuse_rows = pq.read_table(out / "fuse.parquet").to_pylist() if (out / "fuse.parquet").is_file() else []
    benches = {name: _bench(settings, name) for name in settings.benchmarks}
    fixed: dict[str, dict[str, np.ndarray]] = {}
    for r in rows:
        if r["kind"] == "distance" and r["seed"] == -1:
            tasks = list(benches[r["benchmark"]].tasks)
            m = fixed.setdefault(r["benchmark"], {}).setdefault(r["distance"], np.zeros((len(tasks), len(tasks))))
            m[tasks.index(r["source"]), tasks.index(r["task"])] = r["value"]
    rows = [r for r in rows if not (r["kind"] == "distance" and r["seed"] == -1)]
    text = render(summarize(rows, fixed, benches, settings), fuse_rows, benches, settings, 0.0, {})
    lines = text.splitlines()
    lines[2] = wall_line
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="transfer-source selection benchmark (make bench-transfer)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--benchmarks", default=",".join(SelectionSettings.benchmarks))
    parser.add_argument("--seeds", type=int, default=SelectionSettings.seeds)
    parser.add_argument("--fuse-targets", default=",".join(SelectionSettings.fuse_targets))
    parser.add_argument("--trials", type=int, default=SelectionSettings.trials)
    parser.add_argument("--pretrain-trials", type=int, default=SelectionSettings.pretrain_trials)
    parser.add_argument("--batch-size", type=int, default=SelectionSettings.batch_size)
    parser.add_argument("--fuse-seeds", type=int, default=SelectionSettings.fuse_seeds)
    parser.add_argument("--workers", type=int, default=SelectionSettings.workers)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--rerender", action="store_true", help="rewrite <out>/summary.md from <out>'s Parquet results")
    args = parser.parse_args(argv)
    if args.rerender:
        print(rerender(args.out))
        return 0
    import torch

    torch.set_num_threads(1)  # the probes in this process are tiny; the workers set their own
    settings = SelectionSettings(out=args.out, benchmarks=tuple(b for b in args.benchmarks.split(",") if b),
                                 seeds=args.seeds, trials=args.trials, pretrain_trials=args.pretrain_trials,
                                 batch_size=args.batch_size, fuse_targets=tuple(t for t in args.fuse_targets.split(",") if t),
                                 fuse_seeds=args.fuse_seeds, workers=args.workers)
    result = run_selection(settings, progress=not args.no_progress)
    print(result["text"])
    print(f"wall time {result['wall_s']:.0f} s; results in {result['out']} (summary.md, curves.parquet, distances.parquet)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

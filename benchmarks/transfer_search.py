"""Transfer from earlier searches' results, against the transfer-HPO peers (`make bench-transfer-search`).

Leave one task out. For every held-out task h of a table and every seed, the sources are what
earlier searches recorded about each other task, redrawn per seed (`--sources`):

- `random` (`r200` for 200): `source_trials` uniform random evaluations (distinct rows);
- `search` (`search200`): the ledger of a real earlier search, `taml search --method tpe --trials
  source_trials` on that task (in-memory `Study`, seeded per seed, the same for every held-out
  task of that seed), its repeated configurations kept once; these are cached under
  `<out>/source-searches/` so a second run (other methods, shuffled values) reuses them.

Every method then searches h for `trials` trials:

- rs, tpe: `taml search --method rs|tpe` from scratch (in-memory `Study`, no sources);
- rank-ensemble: `taml search --method rank-ensemble --method-option sources=<file>` (in-memory
  `Study`), the sources written as a ledger-like Parquet file (task, config, val_accuracy);
- the peers, implemented here over the table's rows (they are not `taml search` methods):
  * zero-shot: the greedy portfolio of Syne Tune's ZeroShotTransfer with source surrogates:
    each next configuration minimizes sum_s min(best rank so far on s, rank_s(x)), with rank_s
    from a surrogate of source s (the kernel ridge of `rank_ensemble`); the target's results are
    not used;
  * round-robin: trial i evaluates the (i // S)-th best evaluated configuration of source
    (i mod S) (sources in a random order per seed), skipping repeats; then uniform draws;
  * bounding-box (Perrone et al. 2019, Syne Tune's BoundingBox): each categorical decision
    restricted to the values the sources' best configurations take; random search in that box,
    then in the whole space once the box is exhausted;
  * quantile (Salinas et al. 2020): each source's values mapped through its Gaussian copula,
    one surrogate mu(x) (kernel ridge) fitted on all sources' pairs, sigma the RMS of its
    residuals; on the target a GP on the residuals of the target's own copula values about mu
    (Hamming kernel sigma^2 exp(-d_H / 1)), and Thompson sampling from the marginal posterior
    over the candidates (the "GC3P" variant: it uses the target's own results).

A search stops at `trials` trials, or earlier once it has reached the target and run past the last
regret checkpoint. Reported per task and method, median, IQR and seeds reaching it over `seeds` seeds, of (a) trials
until a configuration of h's top 1 % (at least the ceil(1 % of rows)-th best value) is evaluated,
(b) normalized regret (max - best) / (max - median) after 10 and 25 trials. `summary.md` holds
one table per benchmark and the command that made it.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.jobs import run_jobs
from transfer_automl.errors import ConfigError
from transfer_automl.search.rank_ensemble import (
    copula_values,
    kernel_ridge,
    matches,
    pair_kernel,
)

STUDY_METHODS = ("rs", "tpe", "rank-ensemble")
PEERS = ("zero-shot", "round-robin", "bounding-box", "quantile")
ALL_METHODS = ("rs", "tpe", *PEERS, "rank-ensemble")
METHOD_OPTIONS: dict[str, dict[str, Any]] = {"rs": {}, "tpe": {"n_startup_trials": 10}, "rank-ensemble": {}}
SOURCE_KINDS = ("random", "search")
SOURCE_SEARCH_SEED = 10_000  # the earlier search on a source task for seed k runs with seed 10_000 + k


def parse_sources(text: str, default_trials: int = 200) -> tuple[str, int]:
    """`--sources` as (kind, evaluations per source task): "random" or "r200" (200 uniform random
    evaluations), "search" or "search200" (the ledger of a 200-trial TPE search)."""
    spelled = text.strip().lower()
    for kind, prefixes in (("random", ("random", "r")), ("search", ("search", "s"))):
        for prefix in prefixes:
            rest = spelled[len(prefix):]
            if spelled.startswith(prefix) and (rest == "" or rest.isdigit()):
                n = int(rest) if rest else default_trials
                if n < 1:
                    break
                return kind, n
    raise ConfigError(f"--sources must be random, search, r<N> or search<N> (N >= 1 evaluations per source task), "
                      f"got {text!r}")


@dataclass(frozen=True)
class TransferBenchSettings:
    benchmark: str  # transnasbench101-micro | nasbench201 | taml-text-real
    out: str
    methods: tuple[str, ...] = ALL_METHODS
    seeds: int = 20
    trials: int = 100
    source_trials: int = 200  # random evaluations per source task, redrawn per seed
    top_fraction: float = 0.01  # the target: a configuration among the best ceil(fraction * rows)
    checkpoints: tuple[int, ...] = (10, 25)
    tasks: tuple[str, ...] = ()  # held-out tasks (default: all)
    shuffle_sources: bool = False  # sources that predict nothing: does transfer hurt?
    sources: str = "random"  # random: uniform evaluations; search: the ledger of a TPE search per source task
    workers: int = 1
    data_dir: str | None = None

    def validate(self) -> None:
        unknown = sorted(set(self.methods) - set(ALL_METHODS))
        if unknown:
            raise ConfigError(f"methods: unknown {unknown}; available: {list(ALL_METHODS)}")
        for name in ("seeds", "trials", "source_trials", "workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sources not in SOURCE_KINDS:
            raise ConfigError(f"sources must be one of {list(SOURCE_KINDS)}, got {self.sources!r}")
        if not 0 < self.top_fraction < 1:
            raise ConfigError(f"top_fraction must be in (0, 1), got {self.top_fraction}")


# -- sources and the target -----------------------------------------------------------------


def draw_sources(bench, task: str, seed: int, n: int, shuffled: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{source task: (row indices, values)}: n distinct random rows of every other task, per (task,
    seed). `shuffled`: each source's values permuted among its rows, so the sources predict nothing
    (the check that transfer does not hurt)."""
    rng = np.random.default_rng([seed, bench.tasks.index(task), 14])
    n = min(n, bench.num_rows)
    out = {}
    for s in bench.tasks:
        if s != task:
            rows = np.sort(rng.choice(bench.num_rows, n, replace=False))
            values = bench.metric[s][rows]
            out[s] = (rows, rng.permutation(values) if shuffled else values)
    return out


def search_sources(backend, task: str, seed: int, n: int, cache_dir: Path | None,
                   shuffled: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{source task: (row indices, values)}: for every task but `task`, the distinct rows of the
    ledger of an n-trial TPE search on it (`taml search --method tpe`, seed SOURCE_SEARCH_SEED +
    seed), in the order first evaluated. `cache_dir` keeps each source search's ledger (task,
    seed and n in its name) so later runs reuse it. `shuffled` as in `draw_sources`."""
    bench = backend.trainer.benchmark
    rng = np.random.default_rng([seed, bench.tasks.index(task), 14])
    out = {}
    for s in bench.tasks:
        if s != task:
            rows = _source_search_rows(backend, s, seed, n, cache_dir)
            values = bench.metric[s][rows]
            out[s] = (rows, rng.permutation(values) if shuffled else values)
    return out


def _source_search_rows(backend, task: str, seed: int, n: int, cache_dir: Path | None) -> np.ndarray:
    """Distinct table rows an n-trial TPE search on `task` evaluated, in first-seen order."""
    import os

    from benchmarks.studies import on_tasks, run_study

    bench = backend.trainer.benchmark
    cached = cache_dir / f"{task}-seed{seed}-tpe{n}.json" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return np.asarray(json.loads(cached.read_text(encoding="utf-8"))["rows"], dtype=np.int64)
    settings = {"method": "tpe", "seed": SOURCE_SEARCH_SEED + seed, "trials": n, "batch_size": 1,
                "search_id": f"source-{task}-{seed}", "method_options": dict(METHOD_OPTIONS["tpe"])}
    _, done = run_study(settings, on_tasks(backend, [task]))
    rows = list(dict.fromkeys(bench.row(d.trial.actions) for d in done if d.row.status == "ok"))
    if cached is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")  # workers may race: write, then rename
        tmp.write_text(json.dumps({"task": task, "seed": seed, "trials": n, "rows": rows}), encoding="utf-8")
        os.replace(tmp, cached)
    return np.asarray(rows, dtype=np.int64)


def top_threshold(bench, task: str, fraction: float) -> float:
    """The value of the ceil(fraction * rows)-th best row: at least this is in the top fraction."""
    values = np.sort(bench.all_values(task))[::-1]
    return float(values[max(1, math.ceil(fraction * len(values))) - 1])


def write_sources(bench, sources: dict[str, np.ndarray], path: Path) -> Path:
    """The sources as the ledger columns rank-ensemble reads: task, config (JSON), val_accuracy, status."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for task, (idx, values) in sources.items():
        for r, v in zip(idx.tolist(), values.tolist(), strict=True):
            config = bench.space.decode(bench.row_actions[r].tolist())
            rows.append({"task": task, "config": json.dumps(config, sort_keys=True),
                         "val_accuracy": float(v), "status": "ok"})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# -- the peers ------------------------------------------------------------------------------


def _source_surrogate(bench, rows: np.ndarray, values: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """Kernel-ridge predictions (copula scale) of a source over the candidate rows."""
    xs = bench.row_actions[rows]
    alpha = kernel_ridge(pair_kernel(matches(xs, xs)), copula_values(values), 1.0)
    return pair_kernel(matches(cands, xs)) @ alpha


def zero_shot(bench, sources, rng) -> Iterator[int]:
    cands = bench.row_actions
    ranks = []
    for rows, values in sources.values():
        pred = _source_surrogate(bench, rows, values, cands)
        r = np.empty(len(pred))
        r[np.argsort(-pred, kind="stable")] = np.arange(len(pred))
        ranks.append(r)
    ranks = np.stack(ranks)  # [S, C]: 0 = best predicted
    best = np.full(len(ranks), float(len(cands)))
    used = np.zeros(len(cands), dtype=bool)
    while True:
        cost = np.minimum(best[:, None], ranks).sum(0)
        cost[used] = np.inf
        i = int(np.argmin(cost))
        used[i] = True
        best = np.minimum(best, ranks[:, i])
        yield i


def round_robin(bench, sources, rng) -> Iterator[int]:
    order = [list(rows[np.argsort(-values, kind="stable")]) for rows, values in sources.values()]
    order = [order[i] for i in rng.permutation(len(order))]
    used: set[int] = set()
    for k in range(max(len(o) for o in order)):
        for o in order:
            if k < len(o) and o[k] not in used:
                used.add(o[k])
                yield int(o[k])
    for i in rng.permutation(bench.num_rows):
        if int(i) not in used:
            yield int(i)


def bounding_box(bench, sources, rng) -> Iterator[int]:
    best = np.stack([bench.row_actions[rows[int(np.argmax(values))]] for rows, values in sources.values()])
    inside = np.all([np.isin(bench.row_actions[:, d], np.unique(best[:, d])) for d in range(best.shape[1])], axis=0)
    box = np.flatnonzero(inside)
    rest = np.flatnonzero(~inside)
    yield from (int(i) for i in rng.permutation(box))
    yield from (int(i) for i in rng.permutation(rest))


def quantile(bench, sources, rng, values: np.ndarray) -> Iterator[int]:
    cands = bench.row_actions
    xs = np.concatenate([bench.row_actions[rows] for rows, _ in sources.values()])
    zs = np.concatenate([copula_values(values) for _, values in sources.values()])
    k = pair_kernel(matches(xs, xs))
    alpha = kernel_ridge(k, zs, 1.0)
    mu = pair_kernel(matches(cands, xs)) @ alpha
    sigma2 = float(np.mean((zs - k @ alpha) ** 2))
    seen: list[int] = []
    used = np.zeros(len(cands), dtype=bool)
    while True:
        mean, sd = mu.copy(), np.full(len(cands), math.sqrt(sigma2))
        if seen:
            xo = cands[seen]
            res = copula_values(values[seen]) - mu[seen]
            koo = sigma2 * np.exp(-(len(cands[0]) - matches(xo, xo))) + 1e-2 * sigma2 * np.eye(len(seen))
            kxo = sigma2 * np.exp(-(len(cands[0]) - matches(cands, xo)))
            chol = np.linalg.cholesky(koo)
            mean = mu + kxo @ np.linalg.solve(chol.T, np.linalg.solve(chol, res))
            v = np.linalg.solve(chol, kxo.T)
            sd = np.sqrt(np.maximum(sigma2 - (v * v).sum(0), 1e-12))
        draw = mean + sd * rng.standard_normal(len(cands))
        draw[used] = -np.inf
        i = int(np.argmax(draw))
        used[i] = True
        seen.append(i)
        yield i


# -- one job: every method on one held-out task with one seed --------------------------------


@dataclass
class Curve:
    task: str
    method: str
    seed: int
    values: list[float]  # the value of each trial, in order (stopped once `_enough`)
    wall_s: float


def _enough(values: list[float], threshold: float, settings: TransferBenchSettings) -> bool:
    """A search may stop once it has reached the target and passed the last regret checkpoint:
    nothing reported depends on its later trials."""
    return len(values) >= settings.trials or (
        len(values) >= max(settings.checkpoints) and max(values) >= threshold)


def _peer_values(bench, method: str, task: str, sources, seed: int, settings: TransferBenchSettings,
                 threshold: float) -> list[float]:
    rng = np.random.default_rng([seed, bench.tasks.index(task), ALL_METHODS.index(method)])
    values = bench.all_values(task)
    gen = {"zero-shot": lambda: zero_shot(bench, sources, rng),
           "round-robin": lambda: round_robin(bench, sources, rng),
           "bounding-box": lambda: bounding_box(bench, sources, rng),
           "quantile": lambda: quantile(bench, sources, rng, values)}[method]()
    out = []
    for i in gen:
        out.append(float(values[i]))
        if _enough(out, threshold, settings):
            break
    return out


def run_job(settings: TransferBenchSettings, task: str, seed: int) -> list[Curve]:
    import torch

    torch.set_num_threads(1)
    from benchmarks.studies import named_backend, on_tasks, run_study

    backend = named_backend(settings.benchmark, settings.data_dir)
    bench = backend.trainer.benchmark
    if settings.sources == "search":
        sources = search_sources(backend, task, seed, settings.source_trials, Path(settings.out) / "source-searches",
                                 settings.shuffle_sources)
    else:
        sources = draw_sources(bench, task, seed, settings.source_trials, settings.shuffle_sources)
    threshold = top_threshold(bench, task, settings.top_fraction)
    curves = []
    with tempfile.TemporaryDirectory(prefix="taml-bench-sources-") as tmp:
        source_file = write_sources(bench, sources, Path(tmp) / "sources.parquet")
        for method in settings.methods:
            started = time.perf_counter()
            if method in STUDY_METHODS:
                options = dict(METHOD_OPTIONS[method])
                if method == "rank-ensemble":
                    options["sources"] = str(source_file)
                _, done = run_study({"method": method, "seed": seed, "trials": settings.trials, "batch_size": 1,
                                     "search_id": f"{method}-{task}-{seed}", "method_options": options},
                                    on_tasks(backend, [task]),
                                    until=lambda done: _enough([d.row.val_accuracy for d in done], threshold, settings))
                values = [d.row.val_accuracy for d in done if d.row.task == task]
            else:
                values = _peer_values(bench, method, task, sources, seed, settings, threshold)
            curves.append(Curve(task, method, seed, values, time.perf_counter() - started))
    return curves



# -- analysis -------------------------------------------------------------------------------


def trials_to(values: list[float], threshold: float) -> float:
    """1-based index of the first value >= threshold; inf if none."""
    hits = np.flatnonzero(np.asarray(values) >= threshold)
    return float(hits[0] + 1) if len(hits) else math.inf


def regret_after(bench, task: str, values: list[float], k: int) -> float:
    best = max(values[:k])
    return 1.0 - bench.normalized(task, best)


def median_iqr(values: list[float]) -> tuple[float, float, float]:
    """Median and quartiles; "not reached" (inf) ranks above every count."""
    a = np.asarray(values, dtype=float)
    finite_max = float(np.max(a[np.isfinite(a)], initial=0.0))
    q = np.percentile(np.where(np.isinf(a), finite_max + 1e9, a), [50, 25, 75])
    return tuple(math.inf if x > finite_max + 0.5 else float(x) for x in q)


def summarize(curves: list[Curve], bench, settings: TransferBenchSettings) -> dict[str, Any]:
    tasks = list(dict.fromkeys(c.task for c in curves))
    out: dict[str, Any] = {"benchmark": bench.name, "tasks": {}}
    for task in tasks:
        threshold = top_threshold(bench, task, settings.top_fraction)
        per = {}
        for method in settings.methods:
            mine = [c for c in curves if c.task == task and c.method == method]
            if not mine:
                continue
            hits = [trials_to(c.values, threshold) for c in mine]
            per[method] = {"trials": median_iqr(hits), "reached": int(np.isfinite(hits).sum()), "seeds": len(mine),
                           "per_seed": hits}
            for k in settings.checkpoints:
                per[method][f"regret@{k}"] = median_iqr([regret_after(bench, task, c.values, k) for c in mine])
        out["tasks"][task] = {"threshold": threshold, "methods": per}
    return out


def _cell(m: tuple[float, float, float], cap: int, digits: int = 0) -> str:
    def one(x: float) -> str:
        if math.isinf(x):
            return f">{cap}"
        if digits == 0:  # trial counts: a median of an even number of seeds may end in .5 (never round it)
            return f"{x:g}"
        return f"{x:.{digits}f}"

    return f"{one(m[0])} [{one(m[1])}-{one(m[2])}]"


def render(summary: dict[str, Any], settings: TransferBenchSettings, command: str, wall_s: float) -> str:
    methods = list(settings.methods)
    tasks = list(summary["tasks"])
    lines = [f"# Transfer search: {summary['benchmark']}", "", f"Command: `{command}`  ",
             f"Wall time: {wall_s:.0f} s on {settings.workers} worker(s). {settings.seeds} seeds; sources: "
             f"{_sources_words(settings)}, redrawn per seed"
             f"{' (values shuffled among rows: sources that predict nothing)' if settings.shuffle_sources else ''}; "
             f"{settings.trials} trials per search, every suggestion counted.", "",
             f"## Trials until a configuration of the held-out task's top {settings.top_fraction:.0%} is evaluated",
             "", f"Median [IQR] over seeds, then seeds that reached it; `>{settings.trials}` = not reached.", "",
             "| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for m in methods:
        cells = []
        for t in tasks:
            e = summary["tasks"][t]["methods"].get(m)
            cells.append(f"{_cell(e['trials'], settings.trials)} ({e['reached']}/{e['seeds']})" if e else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for k in settings.checkpoints:
        lines += ["", f"## Normalized regret after {k} trials (median [IQR]; 0 = best row, 1 = median row)", "",
                  "| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
        for m in methods:
            cells = [(_cell(e[f"regret@{k}"], settings.trials, 3) if (e := summary["tasks"][t]["methods"].get(m)) else "-")
                     for t in tasks]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _sources_words(settings: TransferBenchSettings) -> str:
    if settings.sources == "search":
        return (f"the ledger of a {settings.source_trials}-trial TPE search (`taml search --method tpe`) on every "
                "other task, its distinct configurations")
    return f"{settings.source_trials} random evaluations of every other task"


def command_line(settings: TransferBenchSettings) -> str:
    tasks = f" --tasks {','.join(settings.tasks)}" if settings.tasks else ""
    return (f"python -m benchmarks.transfer_search --benchmark {settings.benchmark} --methods "
            f"{','.join(settings.methods)} --seeds {settings.seeds} --trials {settings.trials} --source-trials "
            f"{settings.source_trials} --sources {settings.sources}{tasks}{' --shuffle-sources' if settings.shuffle_sources else ''} --workers {settings.workers} --out {settings.out}")


def run_benchmark(settings: TransferBenchSettings, progress: bool = True) -> dict[str, Any]:
    settings.validate()
    from benchmarks.studies import named_backend

    started = time.perf_counter()
    bench = named_backend(settings.benchmark, settings.data_dir).trainer.benchmark
    tasks = list(settings.tasks) or list(bench.tasks)
    unknown = sorted(set(tasks) - set(bench.tasks))
    if unknown:
        raise ConfigError(f"tasks: {unknown} are not tasks of {bench.name} ({bench.tasks})")
    jobs = [(settings, task, seed) for task in tasks for seed in range(settings.seeds)]
    curves: list[Curve] = run_jobs(run_job, jobs, settings.workers, progress, bench.name)
    curves.sort(key=lambda c: (tasks.index(c.task), c.seed, settings.methods.index(c.method)))
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(curves, bench, settings)
    wall = time.perf_counter() - started
    command = command_line(settings)
    (out / "summary.md").write_text(render(summary, settings, command, wall), encoding="utf-8")
    (out / "curves.json").write_text(json.dumps([asdict(c) for c in curves]), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary, default=lambda x: None), encoding="utf-8")
    return {"summary": summary, "wall_s": wall, "out": str(out), "command": command}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", required=True, choices=["transnasbench101-micro", "nasbench201", "taml-text-real"])
    p.add_argument("--methods", default=",".join(ALL_METHODS))
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--source-trials", type=int, default=None,
                   help="evaluations per source task (default 200, or the N of --sources r<N>/search<N>)")
    p.add_argument("--sources", default="random",
                   help="random (uniform evaluations, also r200) or search (the ledger of a TPE search, also search200)")
    p.add_argument("--tasks", default="")
    p.add_argument("--shuffle-sources", action="store_true",
                   help="permute each source's values among its rows: sources that predict nothing")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--data-dir")
    p.add_argument("--out", required=True)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    kind, n = parse_sources(a.sources)
    settings = TransferBenchSettings(
        benchmark=a.benchmark, out=a.out, methods=tuple(m.strip() for m in a.methods.split(",") if m.strip()),
        seeds=a.seeds, trials=a.trials, source_trials=a.source_trials or n, sources=kind,
        tasks=tuple(t.strip() for t in a.tasks.split(",") if t.strip()), shuffle_sources=a.shuffle_sources,
        workers=a.workers, data_dir=a.data_dir)
    result = run_benchmark(settings, progress=not a.no_progress)
    print((Path(result["out"]) / "summary.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Search-efficiency benchmark on tabular NAS benchmarks (`taml bench search`, `make bench-search`).

Leave one task out: for every task h of the benchmark and every seed,
- each single-task method (random search, regularized evolution, TPE, the controller searches)
  searches h from scratch for `trials` trials;
- `transfer` pretrains a multitask controller on all the other tasks, then continues on h from that
  controller with a fresh task embedding and decaying uniform mixing (Transfer AutoML / Transfer NAS);
- `zero-shot` evaluates on h the best configuration of each other task (no search at all).

Each search is an in-memory `Study` (benchmarks/studies.py) with the settings `taml search
--benchmark <name> --tasks h` takes (`METHOD_SETTINGS`); transfer is its init_from=transfer from
the pretrained study. Every trial is a table lookup, so only the search methods cost time. Reported per task and method,
median and IQR over seeds of (a) the number of trials to reach the value random search reaches in
`trials` trials (median over seeds; the form of Transfer AutoML's Table 2), (b) normalized regret
(max - best so far) / (max - median) after 25, 50, 100, 200 trials. Rewards given to the methods
are the raw table metric: controllers normalize them per task, RE and TPE only compare them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.jobs import run_jobs
from transfer_automl.errors import ConfigError

SINGLE_TASK_METHODS = ("rs", "re", "tpe", "reinforce", "ppo", "pqt", "transformer")
ALL_METHODS = (*SINGLE_TASK_METHODS, "transfer")

# One setting per method for every task and benchmark (never tuned per task), as `SearchSettings`
# fields: each search is the one `taml search --method <m>` runs with them. The papers'
# controller learning rates (1e-4 for T-AML's REINFORCE) assume thousands of trials; 200-trial
# searches need larger steps, so every controller method gets the same documented values here.
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "rs": {},
    "re": {"method_options": {"population_size": 100, "sample_size": 8}},
    "tpe": {"method_options": {"n_startup_trials": 10}},
    "reinforce": {"controller_lr": 0.01},
    "ppo": {},
    "pqt": {},
    "transformer": {},
}


@dataclass(frozen=True)
class BenchSettings:
    benchmark: str  # transnasbench101-micro | nasbench201
    out: str
    methods: tuple[str, ...] = ALL_METHODS
    seeds: int = 20
    trials: int = 200
    checkpoints: tuple[int, ...] = (25, 50, 100, 200)
    transfer_base: str = "pqt"  # the controller search that is pretrained and transferred (see README)
    pretrain_trials_per_task: int = 200  # multitask pretraining budget, per source task
    pretrain_batch_size: int = 1
    mixing_gamma: float = 0.1  # uniform mixing after transfer, decaying to 0 ...
    mixing_samples: int = 100  # ... over this many samples
    tasks: tuple[str, ...] = ()  # held-out tasks to run (default: all)
    workers: int = 2
    data_dir: str | None = None

    def validate(self) -> None:
        unknown = sorted(set(self.methods) - set(ALL_METHODS))
        if unknown:
            raise ConfigError(f"methods: unknown {unknown}; available: {list(ALL_METHODS)}")
        for name in ("seeds", "trials", "workers", "pretrain_trials_per_task", "pretrain_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.transfer_base not in SINGLE_TASK_METHODS[3:]:
            raise ConfigError(f"transfer_base must be a controller search {list(SINGLE_TASK_METHODS[3:])}, got {self.transfer_base!r}")


@dataclass
class RunCurve:
    """Best raw value found after each trial, for one (task, method, seed)."""

    benchmark: str
    task: str
    method: str
    seed: int
    best_so_far: list[float] = field(default_factory=list)
    wall_s: float = 0.0


# -- one job: every method on one held-out task with one seed --------------------------------


def _backend(settings: BenchSettings):
    """The benchmark table as a study backend, loaded once per worker process."""
    from benchmarks.studies import named_backend

    return named_backend(settings.benchmark, settings.data_dir)


def _search(method: str, task: str, seed: int, trials: int, **more: Any) -> dict[str, Any]:
    """The settings of one search (`taml search --method <method> --seed <seed> ...`)."""
    return {"method": method, "seed": seed, "trials": trials, "batch_size": 1,
            "search_id": f"{method}-{task}-{seed}", **METHOD_SETTINGS[method], **more}


def _pretrain_and_transfer(settings: BenchSettings, backend, task: str, seed: int) -> list[float]:
    from benchmarks.studies import best_so_far, on_tasks, run_study

    sources = [t for t in backend.task_names if t != task]
    base = settings.transfer_base
    pretrained, _ = run_study(
        {**_search(base, task, seed, settings.pretrain_trials_per_task * len(sources)),
         "batch_size": settings.pretrain_batch_size, "search_id": f"pre-{task}-{seed}"},
        on_tasks(backend, sources))
    transfer = {"init_from": "transfer", "source": f"pre-{task}-{seed}", "mixing_gamma": settings.mixing_gamma,
                "mixing_samples": settings.mixing_samples, "search_id": f"transfer-{task}-{seed}"}
    _, done = run_study(_search(base, task, seed + 10_000, settings.trials, **transfer), on_tasks(backend, [task]),
                        source=pretrained)
    return best_so_far(done, task)


def run_job(settings: BenchSettings, task: str, seed: int) -> list[RunCurve]:
    import torch

    torch.set_num_threads(1)  # one job per core; intra-op threads only add contention
    from benchmarks.studies import best_so_far, on_tasks, run_study

    backend = _backend(settings)
    bench = backend.trainer.benchmark
    curves = []
    for method in settings.methods:
        started = time.perf_counter()
        if method == "transfer":
            curve = _pretrain_and_transfer(settings, backend, task, seed)
        else:
            _, done = run_study(_search(method, task, seed, settings.trials), on_tasks(backend, [task]))
            curve = best_so_far(done, task)
        curves.append(RunCurve(bench.name, task, method, seed, curve, time.perf_counter() - started))
    return curves



# -- the whole benchmark ----------------------------------------------------------------------


def zero_shot(bench, task: str) -> float:
    """Best value on `task` among the best configurations of the other tasks."""
    return max(bench.value(task, bench.best_actions(source)) for source in bench.tasks if source != task)


def run_benchmark(settings: BenchSettings, progress: bool = True) -> dict[str, Any]:
    settings.validate()
    started = time.perf_counter()
    bench = _backend(settings).trainer.benchmark
    tasks = list(settings.tasks) or list(bench.tasks)
    unknown = sorted(set(tasks) - set(bench.tasks))
    if unknown:
        raise ConfigError(f"tasks: {unknown} are not tasks of {bench.name} ({bench.tasks})")
    methods = tuple(dict.fromkeys(("rs", *settings.methods)))  # random search sets the target
    settings = BenchSettings(**{**asdict(settings), "methods": methods})
    jobs = [(settings, task, seed) for task in tasks for seed in range(settings.seeds)]

    curves: list[RunCurve] = run_jobs(run_job, jobs, settings.workers, progress, bench.name)

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    table = results_table(curves, bench, settings)
    _write_results(table, out / "results.parquet")
    summary = summarize(table, bench, tasks, settings)
    wall = time.perf_counter() - started
    command = command_line(settings)
    (out / "summary.md").write_text(render_summary(summary, settings, wall, command), encoding="utf-8")
    plot_regret(table, bench, tasks, settings, out / f"regret_{bench.name}.png")
    return {"summary": summary, "wall_s": wall, "out": str(out), "command": command}


def command_line(settings: BenchSettings) -> str:
    return (f"taml bench search --benchmark {settings.benchmark} --methods {','.join(settings.methods)} "
            f"--seeds {settings.seeds} --trials {settings.trials} --workers {settings.workers} --out {settings.out}")


# -- analysis ---------------------------------------------------------------------------------


def regret(bench, task: str, value: float) -> float:
    """(max - value) / (max - median): 0 at the best cell, 1 at the median cell."""
    return 1.0 - bench.normalized(task, value)


def results_table(curves: list[RunCurve], bench, settings: BenchSettings) -> list[dict[str, Any]]:
    """One row per (task, method, seed): the curve, regret at the checkpoints, trials to target."""
    rs_final: dict[str, list[float]] = {}
    for c in curves:
        if c.method == "rs":
            rs_final.setdefault(c.task, []).append(c.best_so_far[-1])
    target = {task: float(np.median(v)) for task, v in rs_final.items()}
    rows = []
    for c in curves:
        curve = np.asarray(c.best_so_far)
        reached = np.flatnonzero(curve >= target[c.task])
        row = {
            "benchmark": c.benchmark, "task": c.task, "method": c.method, "seed": c.seed,
            "target": target[c.task],
            "trials_to_target": int(reached[0]) + 1 if len(reached) else math.inf,
            "final_value": float(curve[-1]), "wall_s": c.wall_s,
            "best_so_far": [float(x) for x in curve],
            "zero_shot_value": zero_shot(bench, c.task),
        }
        for k in settings.checkpoints:
            if k <= len(curve):
                row[f"regret@{k}"] = regret(bench, c.task, float(curve[k - 1]))
        rows.append(row)
    return rows


def _write_results(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from transfer_automl.storage import atomic_write

    table = pa.Table.from_pylist(rows)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _median_iqr(values: list[float]) -> tuple[float, float, float]:
    """Median and quartiles; "not reached" (inf) ranks above every count without NaN arithmetic."""
    a = np.asarray(values, dtype=float)
    finite_max = float(np.max(a[np.isfinite(a)], initial=0.0))
    sentinel = finite_max + 1e9  # a quantile that leans on a "not reached" run is not reached
    q = np.percentile(np.where(np.isinf(a), sentinel, a), [50, 25, 75])
    return tuple(math.inf if x > finite_max + 0.5 else float(x) for x in q)


def summarize(rows: list[dict[str, Any]], bench, tasks: list[str], settings: BenchSettings) -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": bench.name, "tasks": {}}
    for task in tasks:
        per_method = {}
        for method in settings.methods:
            mine = [r for r in rows if r["task"] == task and r["method"] == method]
            if not mine:
                continue
            entry = {"trials_to_target": _median_iqr([r["trials_to_target"] for r in mine])}
            for k in settings.checkpoints:
                key = f"regret@{k}"
                if key in mine[0]:
                    entry[key] = _median_iqr([r[key] for r in mine])
            per_method[method] = entry
        zs_value = zero_shot(bench, task)
        out["tasks"][task] = {
            "target": next(r["target"] for r in rows if r["task"] == task),
            "zero_shot_regret": regret(bench, task, zs_value),
            "zero_shot_trials": len(bench.tasks) - 1,
            "methods": per_method,
        }
    return out


def _fmt_trials(m: tuple[float, float, float], cap: int) -> str:
    def one(x: float) -> str:
        return f">{cap}" if math.isinf(x) else f"{x:.0f}"

    return f"{one(m[0])} [{one(m[1])}-{one(m[2])}]"


def render_summary(summary: dict[str, Any], settings: BenchSettings, wall_s: float, command: str) -> str:
    methods = list(settings.methods)
    lines = [f"# Search efficiency: {summary['benchmark']}", "",
             f"Command: `{command}`  ", f"Wall time: {wall_s:.0f} s on {settings.workers} worker(s); "
             f"{settings.seeds} seeds, {settings.trials} trials; transfer = {settings.transfer_base} pretrained on "
             f"the other tasks ({settings.pretrain_trials_per_task} trials per task), uniform mixing "
             f"{settings.mixing_gamma} -> 0 over {settings.mixing_samples} samples.", "",
             f"## Trials to reach random search's {settings.trials}-trial best (median [IQR] over seeds; "
             f"`>{settings.trials}` = not reached)", "",
             "| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for task, t in summary["tasks"].items():
        cells = [_fmt_trials(t["methods"][m]["trials_to_target"], settings.trials) if m in t["methods"] else "-"
                 for m in methods]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    for k in settings.checkpoints:
        if k > settings.trials:
            continue
        lines += ["", f"## Normalized regret after {k} trials (median [IQR]; 0 = best cell, 1 = median cell)", "",
                  "| task | zero-shot | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
        for task, t in summary["tasks"].items():
            cells = []
            for m in methods:
                r = t["methods"].get(m, {}).get(f"regret@{k}")
                cells.append(f"{r[0]:.3f} [{r[1]:.3f}-{r[2]:.3f}]" if r else "-")
            zs = f"{t['zero_shot_regret']:.3f} ({t['zero_shot_trials']} trials)"
            lines.append(f"| {task} | {zs} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_regret(rows: list[dict[str, Any]], bench, tasks: list[str], settings: BenchSettings, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(tasks))
    nrows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    x = np.arange(1, settings.trials + 1)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for method in settings.methods:
            mine = [r["best_so_far"] for r in rows if r["task"] == task and r["method"] == method]
            if not mine:
                continue
            reg = np.array([[regret(bench, task, v) for v in curve] for curve in mine])
            med, lo, hi = np.median(reg, 0), np.percentile(reg, 25, 0), np.percentile(reg, 75, 0)
            line, = ax.plot(x, med, label=method, lw=1.4)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
        zs = regret(bench, task, zero_shot(bench, task))
        ax.axhline(zs, color="k", ls=":", lw=1, label="zero-shot")
        ax.set_title(task, fontsize=10)
        ax.set_xscale("log")
        ax.set_xlabel("trials")
        ax.set_ylabel("normalized regret")
        ax.set_ylim(0, 1)  # above 1 is worse than the median cell: the early trials of every method
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{bench.name}: median regret with IQR band over {settings.seeds} seeds", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, default=lambda x: None if isinstance(x, float) and math.isinf(x) else x)

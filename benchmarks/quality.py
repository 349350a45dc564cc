"""The quality benchmark (issue 15, part 4): is the searched model better than TF-IDF + LR?

For each text task, one job (resumable, each phase's result kept under `<out>/<task>/`):

1. baseline  `real_table.tfidf_baseline`: word 1-2 gram TF-IDF + logistic regression, C picked on
             validation, test accuracy on the same split.
2. search    `taml search` itself (`steps.search.run_search`) on the task alone, in SPACE with
             `--fidelity asha` under `--time-budget` (wall seconds; one torch thread, so the
             search's CPU time is at most about its wall time).
3. refit     `study.refit.refit_champions(search_dir, mode, k)`, what `taml search --refit MODE
             --refit-k K` runs: the top-k configurations retrained at the full budget with early
             stopping on validation; the champion is all of them averaged (`ensemble`, the
             default here) or the best by refit validation accuracy (`topk`). A refit.json of
             another mode or k is run again. A task whose refit has not run yet (a run stopped
             before it) shows the search's best child by validation instead, and the table says so.

Then `docs/benchmarks/quality.md`: per task the champion's test accuracy, TF-IDF + LR's, the
Transfer AutoML paper's top-10 test accuracy where it has one, the champion's configuration, and
the wall and CPU seconds of the search and the refit; the command and its wall time.

    make bench-quality     # python -m benchmarks.quality --out runs/bench-quality (settings: Makefile)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.real_table import PAPER_TABLE3, PAPER_TABLE4, tfidf_baseline

# The 14 text tasks of ../shared/data/text (Transfer AutoML's Tables 3 and 4 and two more), the
# largest first so that two workers finish together.
TASKS = ("20newsgroups", "sst2", "emotion_text", "airline_tweets", "disaster_tweets", "mpqa", "sms_spam",
         "political_social_media", "global_warming", "customer_reviews", "corporate_messaging",
         "primary_emotions", "progressive_opinion", "brown")
SPACE = "taml-text-cpu-full"  # space/builtin.py: frozen GloVe or hashed features, 300 to 10,000 steps
DOC = Path("docs/benchmarks/quality.md")
# Below this line the page holds notes written by hand (what was tried, why a task loses); a new
# run rewrites what is above it and keeps them.
NOTES_MARKER = "<!-- notes: kept when the page is rewritten -->"


@dataclass(frozen=True)
class QualitySettings:
    """What one benchmark run does; the defaults are `make bench-quality`'s."""

    out: str = "runs/bench-quality"  # one directory per task: baseline.json, search/, search.json, refit.json
    tasks: tuple[str, ...] = TASKS
    data_dir: str | None = None  # where task names resolve (default: the usual data directory)
    time_budget_s: float = 180.0  # `--time-budget` of each task's search, wall seconds
    method: str = "reinforce"  # `--method`
    min_budget: float = 1 / 9  # `--min-budget`: ASHA's lowest rung, a fraction of a child's steps
    eta: float = 3.0  # `--eta`
    batch_size: int = 9  # `--batch-size`: trials per round (and per controller update)
    refit: str = "ensemble"  # `--refit`: ensemble or topk (study/refit.py)
    refit_k: int = 5  # `--refit-k`
    seed: int = 0
    workers: int = 2  # tasks run at once, one process each

    def __post_init__(self) -> None:
        from transfer_automl.errors import ConfigError

        if not self.tasks:
            raise ConfigError("tasks: give at least one task name")
        if self.refit not in ("ensemble", "topk"):
            raise ConfigError(f"refit must be ensemble or topk, got {self.refit!r}")
        for name, value, low in (("time_budget_s", self.time_budget_s, 1.0), ("refit_k", self.refit_k, 1),
                                 ("batch_size", self.batch_size, 1), ("workers", self.workers, 1)):
            if not value >= low:
                raise ConfigError(f"{name} must be >= {low:g}, got {value!r}")

    def search_settings(self, task: str) -> dict[str, Any]:
        """The `taml search` settings of one task's search (a `SearchSettings` mapping)."""
        directory = Path(self.out) / task / "search"
        return {"tasks": (task,), "trials": 100_000, "space": SPACE, "method": self.method, "seed": self.seed,
                "budget_scale": 1.0, "fidelity": "asha", "min_budget": self.min_budget, "max_budget": 1.0,
                "eta": self.eta, "batch_size": self.batch_size, "time_budget": self.time_budget_s,
                "out": str(directory), "search_id": f"quality-{task}",
                "cache_dir": str(Path(self.out) / "cache"), "progress": False,
                "history": "none",  # a benchmark's searches stay out of the user's task history
                **({"data_dir": self.data_dir} if self.data_dir else {})}


# -- one task ----------------------------------------------------------------------------------


def _timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process, all its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    tmp.replace(path)  # a phase's file exists only once the phase is done


def run_task(task: str, settings: QualitySettings) -> list[dict[str, Any]]:
    """The three phases of one task; a phase whose result file exists is not run again."""
    import torch

    torch.set_num_threads(1)  # children are small; on a shared machine a second thread mostly waits
    folder = Path(settings.out) / task
    folder.mkdir(parents=True, exist_ok=True)
    baseline_file, search_file, refit_file = folder / "baseline.json", folder / "search.json", folder / "refit.json"
    if not baseline_file.exists():
        result, wall, cpu = _timed(lambda: tfidf_baseline(task, settings.data_dir))
        _write_json(baseline_file, {**result, "wall_s": wall, "cpu_s": cpu})
    search_dir = folder / "search"
    if not search_file.exists():
        shutil.rmtree(search_dir, ignore_errors=True)  # an interrupted search starts again, whole
        _write_json(search_file, _search(task, settings, search_dir))
    if not _refit_done(refit_file, settings):
        from transfer_automl.study.refit import refit_champions

        result, wall, cpu = _timed(lambda: refit_champions(str(search_dir), settings.refit, settings.refit_k,
                                                           data_dir=settings.data_dir,
                                                           cache_dir=str(Path(settings.out) / "cache")))
        _write_json(refit_file, {"task": task, **result["tasks"][task], "mode": settings.refit,
                                 "k": settings.refit_k, "total_cost_s": result.get("total_cost_s"), "wall_s": wall,
                                 "cpu_s": cpu})
    return [task]


def _refit_done(refit_file: Path, settings: QualitySettings) -> bool:
    """Whether refit.json holds a refit of this run's mode and k (one written before modes: topk)."""
    if not refit_file.exists():
        return False
    done = json.loads(refit_file.read_text())
    return (done.get("mode", "topk"), done.get("k")) == (settings.refit, settings.refit_k)


def _search(task: str, settings: QualitySettings, directory: Path) -> dict[str, Any]:
    from transfer_automl.search.fidelity import highest_rungs
    from transfer_automl.steps.search import run_search
    from transfer_automl.study import Study
    from transfer_automl.tracking import MemoryTracker

    result, wall, cpu = _timed(lambda: run_search(settings.search_settings(task), tracker=MemoryTracker()))
    rows = Study.load(directory).rows()
    ok = highest_rungs([r for r in rows if r.status == "ok"])
    # the search's best child as the search summary picks it: highest validation accuracy (at the
    # highest rung each configuration reached), the first of equals
    best = max(ok, key=lambda r: (r.val_accuracy, [-ord(c) for c in r.trial_id]), default=None)
    return {"task": task, "wall_s": wall, "cpu_s": cpu, "stopped": result.stopped, "trials": len(rows),
            "configurations": sum(1 for r in rows if r.parent_trial_id is None),
            "promotions": sum(1 for r in rows if r.parent_trial_id),
            "statuses": {s: sum(1 for r in rows if r.status == s) for s in sorted({r.status for r in rows})},
            "best": None if best is None else {
                "trial_id": best.trial_id, "val_accuracy": best.val_accuracy, "test_accuracy": best.test_accuracy,
                "budget": best.budget, "config": json.loads(best.config)},
            "configs": {r.trial_id: json.loads(r.config) for r in rows}}


# -- the report --------------------------------------------------------------------------------


def paper_top10(task: str) -> tuple[float, str] | None:
    """The paper's own method's test accuracy-top10: T-AML (Table 3) or M-AML (Table 4)."""
    if task in PAPER_TABLE3:
        return PAPER_TABLE3[task][2], "T3"
    if task in PAPER_TABLE4:
        return PAPER_TABLE4[task][2], "T4"
    return None


def config_summary(config: dict[str, Any], steps: int | None = None) -> str:
    """A `taml-text` configuration in one short line: deep tower, wide tower, training samples."""
    parts = []
    if config.get("deep_reg") != "disable_deep_tower":
        tuned = "fine-tuned" if config.get("fine_tune") else "frozen"
        parts.append(f"{config['input_module']} ({tuned}) {config['hidden_layers']}x{config['hidden_size']} "
                     f"{config['activation']}/{config['normalization']} drop {config['dropout']:g}, "
                     f"lr {config['deep_lr']:g} L2 {config['deep_reg']:g}")
    if config.get("wide_reg") != "disable_wide_tower":
        features = " TF-IDF 1-2 grams" if config.get("wide_features") == "tfidf" else ""
        parts.append(f"wide{features} lr {config['wide_lr']:g} L1 {config['wide_reg']:g}")
    samples = f"{int(config['training_samples']):,} samples"
    return "; ".join(parts) + f"; {samples}" + (f" ({steps:,} steps)" if steps is not None else "")


def task_row(task: str, baseline: dict[str, Any], search: dict[str, Any], refit: dict[str, Any] | None) -> dict[str, Any]:
    """One table row from a task's result files: the champion (refit's, else the search's best)."""
    if refit is not None:
        trial = refit["champion_trial_id"]
        chosen = next(c for c in refit["candidates"] if c["trial_id"] == trial)
        champion = {"source": "refit", "trial_id": trial, "val": refit["champion_val_accuracy"],
                    "test": refit["champion_test_accuracy"], "steps": chosen.get("steps"),
                    "config": search["configs"][trial], "members": len(refit.get("ensemble_trial_ids", [trial]))}
    elif search.get("best") is not None:
        best = search["best"]
        champion = {"source": "search", "trial_id": best["trial_id"], "val": best["val_accuracy"],
                    "test": best["test_accuracy"], "steps": None, "config": best["config"]}
    else:
        champion = None
    return {"task": task, "champion": champion, "tfidf_test": baseline["test"], "tfidf_C": baseline["C"],
            "majority_test": baseline.get("majority_test"), "paper": paper_top10(task),
            "search_wall_s": search["wall_s"], "search_cpu_s": search["cpu_s"],
            "configurations": search["configurations"], "promotions": search["promotions"],
            "refit_wall_s": refit["wall_s"] if refit else None, "refit_cpu_s": refit["cpu_s"] if refit else None,
            "beats": champion is not None and champion["test"] >= baseline["test"]}


def read_rows(out: str | Path, tasks: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of the tasks whose baseline and search are done (refit optional), in `tasks` order."""
    rows = []
    for task in tasks:
        folder = Path(out) / task
        if not (folder / "baseline.json").exists() or not (folder / "search.json").exists():
            continue
        refit_file = folder / "refit.json"
        rows.append(task_row(task, json.loads((folder / "baseline.json").read_text()),
                             json.loads((folder / "search.json").read_text()),
                             json.loads(refit_file.read_text()) if refit_file.exists() else None))
    return rows


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _span_minutes(runs: list[dict[str, Any]]) -> float:
    """Minutes from the first run's start to the last run's end (starts are kept to the minute)."""
    from datetime import datetime, timedelta

    if not runs:
        return 0.0
    starts = [datetime.strptime(r["started"], "%Y-%m-%d %H:%M UTC") for r in runs]
    ends = [s + timedelta(seconds=r["wall_s"]) for s, r in zip(starts, runs, strict=True)]
    return (max(ends) - min(starts)).total_seconds() / 60


def _champion_cell(champion: dict[str, Any] | None) -> str:
    if champion is None:
        return "-"
    return _pct(champion["test"]) + (" (not refit)" if champion["source"] == "search" else "")


def _secs(wall: float | None, cpu: float | None) -> str:
    return "-" if wall is None else f"{wall:.0f} / {cpu:.0f}"


def render(rows: list[dict[str, Any]], settings: QualitySettings, command: str, runs: list[dict[str, Any]],
           machine: str) -> str:
    """The Markdown page: the table, how many tasks beat the baseline, the command and its wall time."""
    wins = sum(r["beats"] for r in rows)
    refit = sum(r["champion"] is not None and r["champion"]["source"] == "refit" for r in rows)
    partial = f" ({len(rows) - refit} of {len(rows)} tasks not refit yet: their champion is the search's best)" \
        if 0 < refit < len(rows) else ""
    span = _span_minutes(runs)
    run_list = "; ".join(f"{r['wall_s'] / 60:.0f} min from {r['started']}"
                         + (f" (`{r['command']}`)" if r.get("command") else "") for r in runs)
    lines = [
        "# Quality: the searched champion against TF-IDF + logistic regression", "",
        f"Command: `make bench-quality`, i.e. `{command}`; {span:.0f} min wall from the first run's start to the "
        f"last one's end, in {len(runs)} run(s) of it (a run resumes: it skips the phases already done; runs on "
        f"different tasks may overlap): {run_list}; {machine}.", "",
        f"Per task: `taml search --tasks <task> --space {SPACE} --budget-scale 1 --fidelity asha "
        f"--min-budget {settings.min_budget:.4g} --max-budget 1 --eta {settings.eta:g} --method {settings.method} "
        f"--batch-size {settings.batch_size} --time-budget {settings.time_budget_s:g}s --seed {settings.seed} --history none` "
        f"(through `steps.search.run_search`, one torch thread, {settings.workers} task(s) at a time), then "
        + (f"`refit_champions(search_dir, \"{settings.refit}\", {settings.refit_k})` (what `--refit {settings.refit} "
           f"--refit-k {settings.refit_k}` runs)" if refit else "no refit yet (a run stopped before it): "
           "the champion is the search's best child by validation accuracy")
        + partial + ". **CPU budget per task: the search's wall time is capped at "
        f"{settings.time_budget_s / 60:.3g} min (`--time-budget`), so with one thread it uses at most about "
        f"{settings.time_budget_s / 60:.3g} CPU-minutes**; the refit and the baseline come on top (measured below).", "",
        f"**The champion's test accuracy is at least TF-IDF + LR's on {wins} of {len(rows)} tasks**"
        + ("." if wins >= 12 else " (the goal is 12 of 14: not reached)." if len(rows) == len(TASKS)
           else f" (the goal, 12 of the {len(TASKS)} tasks, needs all of them)."), "",
        "| task | champion test | TF-IDF + LR test (C) | paper top-10 test | majority | champion >= TF-IDF | "
        "champion configuration | configurations (promotions) | search wall / CPU s | refit wall / CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        champion = r["champion"]
        paper = f"{r['paper'][0]:.1f} ({r['paper'][1]})" if r["paper"] else "-"
        summary = config_summary(champion["config"], champion["steps"]) if champion else "no child trained"
        if champion and champion.get("members", 1) > 1:
            summary = f"ensemble of {champion['members']}; its first: {summary}"
        lines.append(
            f"| {r['task']} | {_champion_cell(champion)} | {_pct(r['tfidf_test'])} ({r['tfidf_C']:g}) "
            f"| {paper} | {_pct(r['majority_test'])} | {'yes' if r['beats'] else '**no**'} | {summary} "
            f"| {r['configurations']} ({r['promotions']}) | {_secs(r['search_wall_s'], r['search_cpu_s'])} "
            f"| {_secs(r['refit_wall_s'], r['refit_cpu_s'])} |")
    lines += ["", "Columns: test accuracy in %, on each task's test split (never used to select). Champion: "
              + (("the refit champion: the top-k by search validation accuracy retrained at the full budget, "
                  + ("all of them as one model averaging their class probabilities (an ensemble; its configuration "
                     "column shows the first, the search's best)." if settings.refit == "ensemble"
                     else "the best by refit validation."))
                 if refit else "the search's best child by validation accuracy at the highest rung it reached.")
              + " TF-IDF + LR: `benchmarks/real_table.py:tfidf_baseline` (word 1-2 grams, min_df 2, sublinear tf, "
              "C in {1, 10, 100} by validation). Paper: Transfer AutoML's test accuracy-top10 after 2,000 trials "
              "(T3: Table 3, T-AML; T4: Table 4, M-AML). Search CPU s: the search process's CPU time, all threads."]
    return "\n".join(lines) + "\n"


def write_page(path: Path, page: str) -> None:
    """Write the generated page, keeping the hand-written notes below NOTES_MARKER of the old one."""
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES_MARKER):] if NOTES_MARKER in old else NOTES_MARKER + "\n"
    path.write_text(page + "\n" + notes)


# -- one child, for the measurements behind SPACE ----------------------------------------------

# The child the notes' measurements vary: frozen GloVe 1x256 with layer norm and both towers.
CHILD_BASE = {"input_module": "glove-6b-50d", "fine_tune": False, "hidden_layers": 1, "hidden_size": 256,
              "activation": "relu", "normalization": "layer", "dropout": 0.0, "deep_lr": 0.1, "deep_reg": 0.0001,
              "wide_lr": 0.3, "wide_reg": 0.0001, "training_samples": 100000}


def train_child(task: str, changes: dict[str, Any], data_dir: str | None, cache: str) -> dict[str, Any]:
    """Train CHILD_BASE with `changes` at budget scale 1 (seed 0, one thread): accuracy and CPU time."""
    import torch

    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.tasks import load_task
    from transfer_automl.tasks.features import FeatureCache

    torch.set_num_threads(1)
    trainer = TextChildTrainer(ChildTrainerConfig(budget_scale=1.0), FeatureCache(cache))
    config = {**CHILD_BASE, **changes}
    result, wall, cpu = _timed(lambda: trainer.train(config, load_task(task, data_dir), seed=0))
    return {"task": task, "changes": changes, "status": result.status, "val": result.val_accuracy,
            "test": result.test_accuracy, "steps": result.train_steps, "wall_s": wall, "cpu_s": cpu,
            "phases": result.phases}


# -- the command -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    defaults = QualitySettings()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--tasks", default=",".join(defaults.tasks), help="comma-separated task names")
    parser.add_argument("--data-dir")
    parser.add_argument("--time-budget", type=float, default=defaults.time_budget_s, help="seconds per task search")
    parser.add_argument("--method", default=defaults.method)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--refit", default=defaults.refit, help="ensemble or topk")
    parser.add_argument("--refit-k", type=int, default=defaults.refit_k)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--doc", default=str(DOC), help="the page to write")
    parser.add_argument("--report-only", action="store_true", help="write the page from what --out holds")
    parser.add_argument("--child", nargs="+", metavar=("TASK", "CHANGES"),
                        help="instead: train one child, CHILD_BASE with JSON changes per CHANGES, and print it")
    args = parser.parse_args(argv)
    if args.child:
        for changes in args.child[1:] or ["{}"]:
            print(json.dumps(train_child(args.child[0], json.loads(changes), args.data_dir,
                                         str(Path(args.out) / "cache"))), flush=True)
        return 0
    from transfer_automl.errors import TamlError
    from transfer_automl.tasks.registry import resolve_task

    try:  # bad settings or a misspelt task fail here, before any work and any file, naming it
        settings = QualitySettings(out=args.out, tasks=tuple(t for t in args.tasks.split(",") if t),
                                   data_dir=args.data_dir, time_budget_s=args.time_budget, method=args.method,
                                   batch_size=args.batch_size, refit=args.refit, refit_k=args.refit_k, seed=args.seed,
                                   workers=args.workers)
        for task in settings.tasks:
            resolve_task(task, settings.data_dir)
    except TamlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_file = out / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else []
    invoked = " ".join(["python -m benchmarks.quality", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    # the command `make bench-quality` runs, with this run's settings
    command = (f"python -m benchmarks.quality --out {settings.out} --time-budget {settings.time_budget_s:g} "
               f"--workers {settings.workers} --refit {settings.refit} --refit-k {settings.refit_k}")
    if not args.report_only:
        from benchmarks.jobs import run_jobs

        started, clock = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.perf_counter()
        run_jobs(run_task, [(task, settings) for task in settings.tasks], settings.workers, True, "tasks")
        # read again: another run of the same --out (other tasks) may have finished meanwhile
        runs = json.loads(runs_file.read_text()) if runs_file.exists() else []
        runs.append({"started": started, "wall_s": time.perf_counter() - clock, "settings": asdict(settings),
                     "command": invoked})
        runs_file.write_text(json.dumps(runs, indent=1))
    rows = read_rows(out, settings.tasks)
    machine = f"{os.cpu_count()}-core CPU machine shared with other jobs"
    write_page(Path(args.doc), render(rows, settings, command, runs, machine))
    print(f"wrote {args.doc}: {sum(r['beats'] for r in rows)} of {len(rows)} tasks at least TF-IDF + LR")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

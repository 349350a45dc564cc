"""Multi-fidelity search against full-budget search at equal wall time, on real text tasks.

Each arm is `taml search` itself (`steps.search.run_search`, a search directory under `--out`)
with `--time-budget`, random search over a CPU-sized Transfer AutoML space (SPACE: frozen GloVe
or random-hashed features, the 12 decisions, children of 25 to 250 steps at `--budget-scale`
0.05, the CPU default), so every arm gets the same seconds and the same proposals in the same order:

    none   every child trained at its full budget
    asha   asynchronous successive halving, rungs 1/9, 1/3, 1 of each child's steps, eta 3
    sha    synchronous successive halving, one bracket of `--batch-size` children per round

The frozen features are computed before any clock starts. Per task and arm, over `--seeds`:
how many configurations were tried, how many trained to the full budget, the best validation
accuracy (each configuration at the highest rung it reached, as the search reports it) and the
test accuracy of that configuration's child, and the same among full-budget children only. The
figure plots the best validation accuracy so far against wall time.

    make bench-fidelity        # python -m benchmarks.fidelity --out runs/bench/fidelity
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SPACE = {"name": "taml-text-cpu", "decisions": [
    {"name": "input_module", "choices": ["glove-6b-50d", "random-hashed-64"]},
    {"name": "fine_tune", "choices": [False]},
    {"name": "hidden_layers", "choices": [1, 2, 3, 5]},
    {"name": "hidden_size", "choices": [16, 32, 64, 128, 256]},
    {"name": "activation", "choices": ["relu", "swish"]},
    {"name": "normalization", "choices": ["none", "batch", "layer"]},
    {"name": "dropout", "choices": [0.0, 0.1, 0.3, 0.5]},
    {"name": "deep_lr", "choices": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]},
    {"name": "deep_reg", "choices": [0.0, 0.0001, 0.001, 0.01, "disable_deep_tower"]},
    {"name": "wide_lr", "choices": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0]},
    {"name": "wide_reg", "choices": [0.0, 0.0001, 0.001, "disable_wide_tower"]},
    {"name": "training_samples", "choices": [50000, 150000, 500000]},
]}


def prefill_features(tasks: Sequence[str], data_dir: str | None, cache: Path) -> None:
    """Compute every (task, module) feature file once, outside the timed searches."""
    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.tasks import load_task
    from transfer_automl.tasks.features import FeatureCache

    trainer = TextChildTrainer(ChildTrainerConfig(budget_scale=0.01), FeatureCache(cache))
    for name in tasks:
        task = load_task(name, data_dir)
        for module in SPACE["decisions"][0]["choices"]:
            config = {d["name"]: d["choices"][0] for d in SPACE["decisions"]}
            trainer.train({**config, "input_module": module, "wide_reg": 0.0}, task)


def run_arm(task: str, arm: str, seed: int, seconds: float, out: Path, space: Path, cache: Path,
            data_dir: str | None, budget_scale: float, batch_size: int) -> dict[str, Any]:
    from transfer_automl.search.fidelity import highest_rungs
    from transfer_automl.steps.search import run_search
    from transfer_automl.study import Study
    from transfer_automl.tracking import MemoryTracker

    directory = out / f"{task}-{arm}-seed{seed}"
    started = time.perf_counter()
    result = run_search({"tasks": (task,), "trials": 100_000, "batch_size": batch_size, "method": "rs", "seed": seed,
                         "out": str(directory), "search_id": directory.name, "space": str(space),
                         "cache_dir": str(cache), "budget_scale": budget_scale, "fidelity": arm,
                         "time_budget": seconds, "progress": False, **({"data_dir": data_dir} if data_dir else {})},
                        tracker=MemoryTracker())
    wall = time.perf_counter() - started
    rows = Study.load(directory).rows()
    t0 = min(r.started_at for r in rows)
    ok = [r for r in rows if r.status == "ok"]
    final = highest_rungs(ok)
    full = [r for r in ok if r.budget is None or r.budget >= 1.0 - 1e-9]

    def best(candidates):
        b = max(candidates, key=lambda r: (r.val_accuracy, [-ord(c) for c in r.trial_id]), default=None)
        return (b.val_accuracy, b.test_accuracy) if b else (float("nan"), float("nan"))

    curve, incumbent = [], float("-inf")  # best validation accuracy so far, any rung, by end time
    for r in sorted(ok, key=lambda r: r.ended_at):
        incumbent = max(incumbent, r.val_accuracy)
        curve.append(((r.ended_at - t0).total_seconds(), incumbent))
    return {"task": task, "arm": arm, "seed": seed, "wall_s": wall, "stopped": result.stopped,
            "configurations": sum(1 for r in rows if r.parent_trial_id is None),
            "promotions": sum(1 for r in rows if r.parent_trial_id), "full_budget": len(full),
            "child_seconds": sum(r.duration_s for r in rows),
            "best": best(final), "best_full": best(full), "curve": curve}


def write_report(results: list[dict[str, Any]], args: argparse.Namespace, command: str, wall: float,
                 docs: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, arms = list(dict.fromkeys(r["task"] for r in results)), list(dict.fromkeys(r["arm"] for r in results))
    lines = [
        "# Multi-fidelity search at equal wall time", "",
        f"Command: `{command}` ({wall / 60:.0f} min wall on a 2-core CPU machine shared with other jobs, whose "
        "load varied while it ran: absolute times are noisy; the arms ran round-robin, so each seed's three "
        "searches met about the same load).", "",
        f"Random search over `benchmarks/fidelity.py:SPACE` (Transfer AutoML's 12 decisions, frozen GloVe or "
        f"random-hashed features, children of {int(500 * args.budget_scale)} to {int(5000 * args.budget_scale)} "
        f"steps at budget scale {args.budget_scale}), {args.seconds:g} s per search (`--time-budget`), "
        f"{len(args.seeds.split(','))} seeds, rounds of {args.batch_size}. Arms: `none` trains every child at full "
        "budget; `asha` and `sha` use rungs 1/9, 1/3, 1 of each child's steps, eta 3 (search/fidelity.py). "
        "Mean over seeds.", "",
        "| task | arm | configurations | promotions | full-budget children | best val (highest rung) | its test "
        "| best val (full budget only) | its test |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        for arm in arms:
            mine = [r for r in results if r["task"] == task and r["arm"] == arm]

            def mean(values):
                values = [v for v in values if v == v]
                return statistics.fmean(values) if values else float("nan")

            lines.append(
                f"| {task} | {arm} | {mean([r['configurations'] for r in mine]):.1f} | "
                f"{mean([r['promotions'] for r in mine]):.1f} | {mean([r['full_budget'] for r in mine]):.1f} | "
                f"{mean([r['best'][0] for r in mine]):.3f} | {mean([r['best'][1] for r in mine]):.3f} | "
                f"{mean([r['best_full'][0] for r in mine]):.3f} | {mean([r['best_full'][1] for r in mine]):.3f} |")
    figure = docs / "fidelity.png"
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for arm in arms:
            grid = [args.seconds * i / 100 for i in range(101)]
            curves = [r["curve"] for r in results if r["task"] == task and r["arm"] == arm]
            ys = []
            for t in grid:
                seen = [max((v for s, v in c if s <= t), default=float("nan")) for c in curves]
                seen = [v for v in seen if v == v]
                ys.append(statistics.fmean(seen) if len(seen) == len(curves) else float("nan"))
            ax.plot(grid, ys, label=arm)
        ax.set_title(task)
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("best validation accuracy so far")
        ax.legend()
    fig.tight_layout()
    fig.savefig(figure, dpi=110)
    lines += ["", f"![best validation accuracy against wall time]({figure.name})", "",
              "Per run (`stopped` is the time budget's own line):", "",
              "| task | arm | seed | wall s | configurations | promotions | child s | stopped |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['task']} | {r['arm']} | {r['seed']} | {r['wall_s']:.0f} | {r['configurations']} | "
                     f"{r['promotions']} | {r['child_seconds']:.0f} | {r['stopped'][:90]} |")
    (docs / "fidelity.md").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(prog="python -m benchmarks.fidelity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="mpqa,customer_reviews")
    parser.add_argument("--arms", default="none,asha,sha")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--seconds", type=float, default=75.0, help="time budget per search")
    parser.add_argument("--budget-scale", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=9)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/fidelity"))
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--report-from", type=Path, default=None,
                        help="write the report from a run's <time>.jsonl (each search as it ended) instead of running")
    args = parser.parse_args(argv)
    import yaml

    if args.report_from is not None:
        results = [json.loads(line) for line in args.report_from.read_text().splitlines() if line.strip()]
        write_report(results, args, f"python -m benchmarks.fidelity --seconds {args.seconds:g} --seeds {args.seeds}",
                     sum(r["wall_s"] for r in results), args.docs)
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    space, cache = args.out / "space.yaml", args.out / "cache"
    space.write_text(yaml.safe_dump(SPACE))
    tasks = args.tasks.split(",")
    prefill_features(tasks, args.data_dir, cache)
    started = time.perf_counter()
    results = []
    run = args.out / time.strftime("%Y%m%d-%H%M%S")
    log = run.with_suffix(".jsonl")  # one line per search, as it ends
    for seed in (int(s) for s in args.seeds.split(",")):
        for task in tasks:
            for arm in args.arms.split(","):  # round-robin: the machine's load falls on every arm alike
                r = run_arm(task, arm, seed, args.seconds, run, space, cache, args.data_dir, args.budget_scale,
                            args.batch_size)
                print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
                with log.open("a") as f:
                    f.write(json.dumps(r, default=str) + "\n")
                results.append(r)
    command = "python -m benchmarks.fidelity " + " ".join(sys.argv[1:] if argv is None else argv)
    write_report(results, args, command.strip(), time.perf_counter() - started, args.docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What the shipped starter history gives a first search: `--transfer auto` on a TransNAS-Bench-101
micro task with an empty history of one's own (so only the starter's other tasks are sources)
against scratch searches, best validation value after a few trials, over seeds.

Each search is `taml search`'s own loop (steps.search.run_search) in a fresh directory, without
MLflow. Writes <out>/summary.md (docs/benchmarks/task_history.md).

    make bench-history   # = python -m benchmarks.task_history --out runs/bench-history
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from transfer_automl.steps.search import run_search
from transfer_automl.tasks.benchmarks import load_benchmark
from transfer_automl.tracking import Tracker

BENCHMARK = "transnasbench101-micro"
METHODS = ("auto", "reinforce", "tpe", "rs")


def best_after(out: Path, task: str, method: str, seed: int, trials: int) -> float:
    """The best validation value of one search (`auto`: --transfer auto; else --method)."""
    how = {"transfer": "auto"} if method == "auto" else {"method": method}
    result = run_search({"benchmark": BENCHMARK, "tasks": (task,), "trials": trials, "seed": seed,
                         "out": str(out / f"{method}-{seed}"), "history": str(out / f"empty-history-{method}-{seed}"),
                         "progress": False, **how}, tracker=Tracker())
    return result.per_task[0].best_val_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--task", default="jigsaw")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=False)
    best = {m: [best_after(args.out, args.task, m, s, args.trials) for s in range(args.seeds)] for m in METHODS}
    values = load_benchmark(BENCHMARK).all_values(args.task)
    lines = [f"# --transfer auto from the starter history: {BENCHMARK} {args.task}, {args.trials} trials, "
             f"{args.seeds} seeds", "", "| method | median best | seeds where auto is better | per seed |", "|---|---|---|---|"]
    for m in METHODS:
        wins = "" if m == "auto" else f"{sum(a > b for a, b in zip(best['auto'], best[m], strict=True))} of {args.seeds}"
        lines.append(f"| {m} | {statistics.median(best[m]):.2f} | {wins} | {', '.join(f'{v:.2f}' for v in best[m])} |")
    auto = statistics.median(best["auto"])
    lines += ["", f"table: best {values.max():.2f}, top 1 % from {sorted(values)[int(0.99 * len(values))]:.2f}, "
              f"median {statistics.median(values):.2f}; auto's median ranks {int((values > auto).sum()) + 1} of "
              f"{len(values)} cells"]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

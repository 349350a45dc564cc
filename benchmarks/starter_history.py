"""Build the starter history shipped in the package (src/transfer_automl/history/starter/).

One entry per table: for each of its tasks, ROWS_PER_TASK rows drawn uniformly without
replacement with a fixed seed, i.e. what a random search of that many trials on the task would
have recorded, not the complete table. The entries are written through HistoryStore.write, the
same code a finished search records itself with.

    make starter-history     # = python -m benchmarks.starter_history
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from transfer_automl.history import HistoryStore, TaskFingerprint
from transfer_automl.history.store import STARTER_DIR
from transfer_automl.tasks.benchmarks import load_benchmark

TABLES = ("taml-text-real", "transnasbench101-micro")
ROWS_PER_TASK = 200
SEED = 14  # issue 14


def starter_entry(name: str, rows_per_task: int, seed: int, data_dir: str | None = None):
    """(task fingerprints, summary table) of one table's starter entry."""
    bench = load_benchmark(name, data_dir if name != "taml-text-real" else None)
    space = bench.space
    columns = {c: [] for c in ("task", "config", "val_accuracy", "test_accuracy", "rung", "budget", "status")}
    tasks = []
    for t, task in enumerate(bench.tasks):
        rng = np.random.default_rng([seed, t])
        picked = np.sort(rng.choice(bench.num_rows, size=min(rows_per_task, bench.num_rows), replace=False))
        actions = bench.actions_of_rows()
        for row in picked:
            config = space.decode([int(a) for a in actions[row]])
            value = bench.value(task, actions[row])
            columns["task"].append(task)
            columns["config"].append(json.dumps(config, sort_keys=True))
            columns["val_accuracy"].append(float(value))
            columns["test_accuracy"].append(float(bench.test_value(task, actions[row])) if bench.has_test(task)
                                            else None)
            columns["rung"].append(0)
            columns["budget"].append(None)
            columns["status"].append("ok")
        tasks.append(TaskFingerprint(task, f"benchmark:{name}/{task}", "benchmark"))
    schema = pa.schema([("task", pa.string()), ("config", pa.string()), ("val_accuracy", pa.float64()),
                        ("test_accuracy", pa.float64()), ("rung", pa.int64()), ("budget", pa.float64()),
                        ("status", pa.string())])
    return space, tasks, pa.table(columns, schema=schema)


def build(out: Path, rows_per_task: int = ROWS_PER_TASK, seed: int = SEED, data_dir: str | None = None) -> int:
    """Write the starter history to `out` (replaced whole); returns its size in bytes."""
    if out.exists():
        shutil.rmtree(out)
    history = HistoryStore(out)
    for name in TABLES:
        space, tasks, summary = starter_entry(name, rows_per_task, seed, data_dir)
        history.write(f"starter-{name}", space.name, space.fingerprint(), tasks, summary)
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STARTER_DIR)
    parser.add_argument("--rows-per-task", type=int, default=ROWS_PER_TASK)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--data-dir", default=None, help="benchmark tables (default ../shared/data/benchmarks)")
    args = parser.parse_args()
    size = build(args.out, args.rows_per_task, args.seed, args.data_dir)
    print(f"starter history: {args.out} ({size:,} bytes)")


if __name__ == "__main__":
    main()

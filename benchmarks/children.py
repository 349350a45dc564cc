"""Child throughput on cached features: children per CPU-minute, the time split, packing speed-up.

For each of three configurations (small / medium / large; see CONFIGS) `--children` children train
one after another on a text task whose frozen features are already cached (the cache is filled
before timing), each through `TextChildTrainer.train` plus what a search does per trial around it:
build the ledger row and commit it as a round file. The time of each child is split into

    feature load   fetching the cached features and wide-tower bags (memory after the first child)
    train          the Proximal Adagrad steps
    evaluate       validation and test accuracy
    bookkeeping    everything else: reading the configuration, building the model and optimizer,
                   the result, the ledger row and its Parquet commit

and children per CPU-minute = children / (process CPU seconds / 60), so the figure does not
depend on how many cores the run had. Target: bookkeeping <= 5 % of a 1 s child.

Packing: `--pack` same-shape children (one configuration, different learning rates, L2 weights
and seeds) train one at a time and then packed (children/packing.py); the speed-up is the ratio
of wall times, and the largest accuracy difference between the two is printed beside it.

    make bench-children            # python -m benchmarks.children
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CONFIGS: dict[str, dict[str, Any]] = {
    # 15 steps, 1 x 16 deep tower over GloVe features, no wide tower
    "small": dict(input_module="glove-6b-50d", fine_tune=False, hidden_layers=1, hidden_size=16, activation="relu",
                  normalization="none", dropout=0.0, deep_lr=0.1, deep_reg=0.0, wide_lr=0.1,
                  wide_reg="disable_wide_tower", training_samples=30000),
    # 150 steps, 2 x 64 with layer norm and dropout, plus the wide tower
    "medium": dict(input_module="glove-6b-50d", fine_tune=False, hidden_layers=2, hidden_size=64, activation="swish",
                   normalization="layer", dropout=0.1, deep_lr=0.1, deep_reg=0.0001, wide_lr=0.1, wide_reg=0.0001,
                   training_samples=300000),
    # 500 steps, 5 x 256 with batch norm over MiniLM features, plus the wide tower
    "large": dict(input_module="all-minilm-l6-v2", fine_tune=False, hidden_layers=5, hidden_size=256,
                  activation="relu", normalization="batch", dropout=0.2, deep_lr=0.03, deep_reg=0.0001, wide_lr=0.1,
                  wide_reg=0.0001, training_samples=1000000),
}


def run_throughput(trainer, task, name: str, config: dict[str, Any], children: int, ledger_dir: Path) -> dict:
    from transfer_automl.search.ledger import Ledger

    ledger = Ledger(ledger_dir / name)
    split = {"feature load": 0.0, "train": 0.0, "evaluate": 0.0, "bookkeeping": 0.0}
    walls, accs = [], []
    cpu0 = time.process_time()
    for i in range(children):
        started = time.perf_counter()
        result = trainer.train(config, task, seed=i)
        row = {"trial_id": f"{name}-{i}", "search_id": "bench", "task": task.name, "controller_step": i,
               "config": json.dumps(config, sort_keys=True), "reward": result.val_accuracy,
               "val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy, "status": result.status,
               "error": result.error, "started_at": None, "ended_at": None, "duration_s": result.duration_s}
        ledger.append_round(i, [row])
        wall = time.perf_counter() - started
        phases = result.phases
        split["feature load"] += phases.get("features", 0.0)
        split["train"] += phases.get("train", 0.0)
        split["evaluate"] += phases.get("evaluate", 0.0)
        split["bookkeeping"] += wall - sum(phases.values())
        walls.append(wall)
        accs.append(result.val_accuracy)
    cpu = time.process_time() - cpu0
    mean_wall = float(np.mean(walls))
    return {
        "config": name, "children": children, "steps": result.train_steps, "mean_s": mean_wall,
        "children_per_cpu_minute": children / (cpu / 60.0), "children_per_wall_minute": children / (sum(walls) / 60),
        "split_ms": {k: 1000 * v / children for k, v in split.items()},
        "bookkeeping_pct": 100 * split["bookkeeping"] / sum(walls),
        "bookkeeping_pct_of_1s": 100 * (split["bookkeeping"] / children) / 1.0,
        "val_accuracy": float(np.mean(accs)),
    }


def run_packing(trainer, task, name: str, config: dict[str, Any], pack: int) -> dict:
    from transfer_automl.children.packing import PackedTextTrainer

    rng = np.random.default_rng(0)
    items = [({**config, "deep_lr": float(rng.choice([0.01, 0.03, 0.1, 0.3])),
               "deep_reg": float(rng.choice([0.0, 0.0001, 0.001]))}, task, 100 + i) for i in range(pack)]
    started = time.perf_counter()
    alone = [trainer.train(c, t, seed=s) for c, t, s in items]
    alone_s = time.perf_counter() - started
    packer = PackedTextTrainer(trainer)
    started = time.perf_counter()
    packed = packer.train_many(items)
    packed_s = time.perf_counter() - started
    diff = max(abs(a.val_accuracy - p.val_accuracy) for a, p in zip(alone, packed, strict=True))
    return {"config": name, "children": pack, "packs": packer.last_pack_sizes, "one_at_a_time_s": alone_s,
            "packed_s": packed_s, "speedup": alone_s / packed_s, "max_val_accuracy_difference": diff}


def format_report(device: str, threads: int, task: str, rows: list[dict], packing: list[dict]) -> str:
    lines = [f"device {device}, {threads} torch thread(s), task {task}", "",
             "| config | steps | s/child | children/CPU-min | feature load ms | train ms | evaluate ms | "
             "bookkeeping ms | bookkeeping % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s = r["split_ms"]
        lines.append(f"| {r['config']} | {r['steps']} | {r['mean_s']:.3f} | {r['children_per_cpu_minute']:.0f} | "
                     f"{s['feature load']:.1f} | {s['train']:.1f} | {s['evaluate']:.1f} | {s['bookkeeping']:.1f} | "
                     f"{r['bookkeeping_pct']:.1f} |")
    lines += ["", "| packed config | children | one at a time s | packed s | speed-up | max val acc diff |",
              "|---|---:|---:|---:|---:|---:|"]
    for p in packing:
        lines.append(f"| {p['config']} | {p['children']} | {p['one_at_a_time_s']:.2f} | {p['packed_s']:.2f} | "
                     f"{p['speedup']:.1f}x | {p['max_val_accuracy_difference']:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.children", description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="mpqa", help="text task (resolved like `taml search --tasks`)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--children", type=int, default=20, help="children per configuration")
    parser.add_argument("--pack", type=int, default=16, help="children per packing comparison")
    parser.add_argument("--configs", default="small,medium,large")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the cores (threads = cores // workers)")
    parser.add_argument("--out", default="runs/bench/children", help="where the JSON result and the cache go")
    args = parser.parse_args(argv)

    from transfer_automl.children.device import configure_cpu_threads, pick_device
    from transfer_automl.children.embeddings import get_module
    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.tasks import load_task
    from transfer_automl.tasks.features import FeatureCache

    threads = configure_cpu_threads(args.workers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = load_task(args.task, args.data_dir)
    trainer = TextChildTrainer(ChildTrainerConfig(), FeatureCache(out / "cache"))
    names = [n for n in args.configs.split(",") if n]
    for name in names:  # fill the cache (and load the modules) before anything is timed
        module = get_module(CONFIGS[name]["input_module"])
        trainer.cache.get(task, module.name, module.features)
        trainer.train(CONFIGS[name], task, seed=0)

    disk_load_ms = {}  # a new process's first read of each cache entry (later children hit memory)
    for module_name in sorted({CONFIGS[n]["input_module"] for n in names}):
        started = time.perf_counter()
        FeatureCache(out / "cache").get(task, module_name, lambda texts: None)
        disk_load_ms[module_name] = 1000 * (time.perf_counter() - started)

    rows, packing = [], []
    with tempfile.TemporaryDirectory() as ledger_dir:
        for name in names:
            rows.append(run_throughput(trainer, task, name, CONFIGS[name], args.children, Path(ledger_dir)))
            print(f"{name}: {rows[-1]['mean_s']:.3f} s/child", flush=True)
    for name in [n for n in ("small", "medium") if n in names]:
        packing.append(run_packing(trainer, task, name, CONFIGS[name], args.pack))
        print(f"packed {name}: {packing[-1]['speedup']:.1f}x", flush=True)
    device = str(pick_device())
    report = format_report(device, threads, task.name, rows, packing)
    report += "\n\nfirst read of a cache entry from disk (once per process): " + ", ".join(
        f"{m} {ms:.1f} ms" for m, ms in disk_load_ms.items())
    (out / "children.json").write_text(json.dumps({"device": device, "threads": threads, "task": task.name,
                                                   "throughput": rows, "packing": packing,
                                                   "disk_load_ms": disk_load_ms}, indent=2))
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

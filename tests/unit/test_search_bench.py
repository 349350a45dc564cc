"""The search-efficiency harness on a small synthetic table (the real runs are `make bench-search`)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transfer_automl.errors import ConfigError
from transfer_automl.tasks.benchmarks import table_benchmark_from_file

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks/ is imported from the checkout (it is not in the wheel)

from benchmarks.search_efficiency import (  # noqa: E402
    BenchSettings,
    RunCurve,
    regret,
    results_table,
    run_benchmark,
    zero_shot,
)


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    """3 decisions x 4 choices, 3 related tasks: each rewards a mix of matching a target cell."""
    rows = []
    for a in range(4):
        for b in range(4):
            for c in range(4):
                base = (a == 1) + (b == 2) + 0.5 * (c == 3)
                rows.append({"a": a, "b": b, "c": c, "t1": base + 0.1 * c, "t2": base + 0.2 * (a == 0),
                             "t3": base - 0.1 * b})
    path = tmp_path_factory.mktemp("table") / "toy.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="module")
def bench(table_path):
    return table_benchmark_from_file(table_path, metric_columns=["t1", "t2", "t3"], name="toy")


def test_regret_and_zero_shot(bench):
    assert regret(bench, "t1", bench.best_value("t1")) == pytest.approx(0.0)
    assert regret(bench, "t1", bench.median_value("t1")) == pytest.approx(1.0)
    expected = max(bench.value("t1", bench.best_actions(s)) for s in ("t2", "t3"))
    assert zero_shot(bench, "t1") == expected


def test_trials_to_target_uses_the_median_random_search_best(bench):
    settings = BenchSettings(benchmark="toy", out="unused", methods=("rs", "re"), trials=4, checkpoints=(2, 4))
    curves = [
        RunCurve("toy", "t1", "rs", 0, [0.0, 1.0, 1.0, 2.0]),
        RunCurve("toy", "t1", "rs", 1, [0.5, 0.5, 1.0, 1.0]),
        RunCurve("toy", "t1", "rs", 2, [0.0, 0.0, 3.0, 3.0]),  # median RS final value: 2.0
        RunCurve("toy", "t1", "re", 0, [2.5, 2.5, 2.5, 2.5]),
        RunCurve("toy", "t1", "re", 1, [0.0, 0.0, 0.0, 0.0]),
    ]
    rows = {(r["method"], r["seed"]): r for r in results_table(curves, bench, settings)}
    assert rows[("rs", 0)]["target"] == 2.0
    assert rows[("rs", 0)]["trials_to_target"] == 4
    assert rows[("rs", 2)]["trials_to_target"] == 3
    assert rows[("re", 0)]["trials_to_target"] == 1
    assert math.isinf(rows[("re", 1)]["trials_to_target"])
    assert rows[("re", 0)]["regret@2"] == pytest.approx(regret(bench, "t1", 2.5))


@pytest.mark.slow
def test_benchmark_run_writes_consistent_outputs(tmp_path, table_path, monkeypatch):
    import benchmarks.studies

    # The harness loads benchmarks by name (once per process); point it at the toy table.
    monkeypatch.setattr(benchmarks.studies, "_BACKENDS", {})
    monkeypatch.setattr("transfer_automl.tasks.benchmarks.load_benchmark",
                        lambda name, data_dir=None: table_benchmark_from_file(table_path, metric_columns=["t1", "t2", "t3"], name="toy"))
    settings = BenchSettings(benchmark="toy", out=str(tmp_path / "out"), methods=("re", "reinforce", "transfer"),
                             seeds=2, trials=20, checkpoints=(5, 20), workers=1, pretrain_trials_per_task=20)
    result = run_benchmark(settings, progress=False)
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"results.parquet", "summary.md", "regret_toy.png"}
    table = pq.read_table(out / "results.parquet").to_pylist()
    assert len(table) == 3 * 2 * 4  # tasks x seeds x (rs added for the target + 3 methods)
    for row in table:
        curve = row["best_so_far"]
        assert len(curve) == 20 and all(x <= y for x, y in zip(curve, curve[1:], strict=False))
    summary = result["summary"]["tasks"]["t2"]["methods"]["re"]
    re_rows = [r for r in table if r["task"] == "t2" and r["method"] == "re"]
    assert summary["regret@20"][0] == pytest.approx(float(np.median([r["regret@20"] for r in re_rows])))
    text = (out / "summary.md").read_text()
    assert "| t1 |" in text and "transfer" in text and "zero-shot" in text


def test_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="unknown"):
        BenchSettings(benchmark="toy", out=str(tmp_path), methods=("rs", "magic")).validate()
    with pytest.raises(ConfigError, match="transfer_base"):
        BenchSettings(benchmark="toy", out=str(tmp_path), transfer_base="rs").validate()

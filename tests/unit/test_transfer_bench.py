"""The transfer benchmark's peers and measures on a small synthetic table (the real runs are
`make bench-transfer-search`)."""

from __future__ import annotations

import itertools
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

from benchmarks.transfer_search import (  # noqa: E402
    bounding_box,
    draw_sources,
    median_iqr,
    parse_sources,
    quantile,
    round_robin,
    search_sources,
    top_threshold,
    trials_to,
    zero_shot,
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    rows = []
    for a, b, c in itertools.product(range(4), repeat=3):
        base = (a == 1) + 0.7 * (b == 2) + 0.4 * (c == 3)
        rows.append({"a": a, "b": b, "c": c, "t1": base + 0.05 * c, "t2": base - 0.1 * b, "t3": -base + 0.01 * a})
    path = tmp_path_factory.mktemp("table") / "toy.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return table_benchmark_from_file(path, metric_columns=["t1", "t2", "t3"], name="toy")


def _take(gen, n):
    return [next(gen) for _ in range(n)]


def test_sources_are_redrawn_per_seed_and_shuffling_keeps_rows(bench):
    a, b = draw_sources(bench, "t1", 0, 20), draw_sources(bench, "t1", 1, 20)
    assert sorted(a) == ["t2", "t3"] and len(a["t2"][0]) == 20 and len(set(a["t2"][0])) == 20
    assert not np.array_equal(a["t2"][0], b["t2"][0])
    assert np.array_equal(a["t2"][1], bench.metric["t2"][a["t2"][0]])
    s = draw_sources(bench, "t1", 0, 20, shuffled=True)
    assert np.array_equal(s["t2"][0], a["t2"][0]) and sorted(s["t2"][1]) == sorted(a["t2"][1])


def test_top_threshold_trials_to_and_median(bench):
    values = np.sort(bench.all_values("t1"))[::-1]
    assert top_threshold(bench, "t1", 0.05) == values[math.ceil(0.05 * 64) - 1]
    assert trials_to([0.0, 1.0, 3.0, 2.0], 2.5) == 3 and trials_to([0.0], 1.0) == math.inf
    assert median_iqr([1, 2, math.inf])[0] == 2 and math.isinf(median_iqr([1, math.inf, math.inf])[0])


def test_round_robin_and_bounding_box_start_from_the_sources_best(bench):
    sources = draw_sources(bench, "t1", 0, 30)
    rng = np.random.default_rng(0)
    first = _take(round_robin(bench, sources, rng), 2)
    bests = {int(rows[np.argmax(v)]) for rows, v in sources.values()}
    assert set(first) == bests
    box_values = [set(bench.row_actions[list(bests), d]) for d in range(3)]
    n_box = int(np.prod([len(v) for v in box_values]))
    picks = _take(bounding_box(bench, sources, rng), 64)
    assert sorted(picks) == list(range(64))  # every row once
    assert all(all(bench.row_actions[r, d] in box_values[d] for d in range(3)) for r in picks[:n_box])


def test_zero_shot_and_quantile_propose_distinct_rows_and_quantile_uses_the_target(bench):
    sources = draw_sources(bench, "t1", 0, 30)
    zs = _take(zero_shot(bench, sources, np.random.default_rng(0)), 20)
    assert len(set(zs)) == 20
    values = bench.all_values("t1")
    q1 = _take(quantile(bench, sources, np.random.default_rng(0), values), 15)
    q2 = _take(quantile(bench, sources, np.random.default_rng(0), -values), 15)
    assert len(set(q1)) == 15 and q1[0] == q2[0] and q1 != q2  # same first pick; then the target's results steer


def test_sources_flag_spellings():
    assert parse_sources("r200") == ("random", 200) and parse_sources("random") == ("random", 200)
    assert parse_sources("search") == ("search", 200) and parse_sources("search50") == ("search", 50)
    assert parse_sources("s30") == ("search", 30)
    for bad in ("r0", "tpe", "r2x", ""):
        with pytest.raises(ConfigError, match="--sources"):
            parse_sources(bad)


def test_search_sources_are_a_tpe_ledger_per_source_task_and_cached(bench, tmp_path):
    from benchmarks.studies import backend_of

    backend = backend_of(bench)
    a = search_sources(backend, "t1", 0, 25, tmp_path)
    assert sorted(a) == ["t2", "t3"]
    rows, values = a["t2"]
    assert 1 < len(rows) <= 25 and len(set(rows.tolist())) == len(rows)  # distinct rows, repeats dropped
    assert np.array_equal(values, bench.metric["t2"][rows])
    # a search, not uniform draws: its later half is better on average than its first trials
    assert values[len(values) // 2:].mean() > values[:10].mean()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t2-seed0-tpe25.json", "t3-seed0-tpe25.json"]
    # the same seed's source search serves every held-out task: t2's ledger for t3 is t2's for t1
    again = search_sources(backend, "t3", 0, 25, tmp_path)
    assert np.array_equal(again["t2"][0], rows)
    (tmp_path / "t2-seed0-tpe25.json").write_text('{"rows": [1, 2, 3]}')  # the cache is what is read
    assert search_sources(backend, "t1", 0, 25, tmp_path)["t2"][0].tolist() == [1, 2, 3]
    shuffled = search_sources(backend, "t1", 0, 25, None, shuffled=True)
    assert np.array_equal(shuffled["t3"][0], a["t3"][0]) and sorted(shuffled["t3"][1]) == sorted(a["t3"][1])
    other_seed = search_sources(backend, "t1", 1, 25, None)
    assert not np.array_equal(other_seed["t2"][0], rows)


def _taml(*argv: str) -> int:
    from transfer_automl.cli import main

    return main(list(argv))


def test_taml_bench_search_with_sources_runs_the_transfer_benchmark(bench, tmp_path, monkeypatch, capsys):
    import benchmarks.studies

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(benchmarks.studies, "_BACKENDS", {})
    monkeypatch.setattr("transfer_automl.tasks.benchmarks.load_benchmark", lambda name, data_dir=None: bench)
    out = tmp_path / "out"
    assert _taml("bench", "search", "--benchmark", "nasbench201", "--methods", "round-robin,rank-ensemble", "--seeds", "1",
                 "--trials", "10", "--sources", "r20", "--target", "top5", "--workers", "1", "--tasks", "t1",
                 "--out", str(out), "--no-progress") == 0
    text = (out / "summary.md").read_text()
    assert "--sources random" in text and "20 random evaluations" in text and "top 5%" in text
    assert "| rank-ensemble |" in text and "| method | t1 |" in text and "t2 |" not in text  # only the task asked for
    for bad, message in ((["--sources", "x9"], "--sources must be"), (["--sources", "r20", "--target", "best"], "--target"),
                         (["--shuffle-sources"], "only with --sources")):
        assert _taml("bench", "search", "--benchmark", "nasbench201", *bad, "--out", str(tmp_path / "bad")) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_cells_keep_half_trial_medians():
    from benchmarks.transfer_search import _cell

    assert _cell((13.5, 10.25, math.inf), 100) == "13.5 [10.25->100]"  # not rounded to an even 14
    assert _cell((0.1234, 0.0, 1.0), 100, 3) == "0.123 [0.000-1.000]"

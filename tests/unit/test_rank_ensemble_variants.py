"""The rank-ensemble variants loop (benchmarks/rank_ensemble_variants.py) on a small synthetic table."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transfer_automl.tasks.benchmarks import table_benchmark_from_file

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks/ is imported from the checkout (it is not in the wheel)

from benchmarks.rank_ensemble_variants import VARIANTS, trials_to_top  # noqa: E402


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    rows = []
    for a, b, c in itertools.product(range(4), repeat=3):
        base = (a == 1) + 0.7 * (b == 2) + 0.4 * (c == 3)
        rows.append({"a": a, "b": b, "c": c, "t1": base + 0.05 * c, "t2": base - 0.1 * b, "t3": base + 0.01 * a})
    path = tmp_path_factory.mktemp("table") / "toy.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return table_benchmark_from_file(path, metric_columns=["t1", "t2", "t3"], name="toy")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_finds_the_best_row_of_a_target_its_sources_predict(bench, variant):
    # t1's best row (a=1, b=2, c=3) is also the best of t2 and t3: every variant finds it well
    # before a search that ignored the sources would (64 rows: random search needs 32 on average)
    hits = [trials_to_top(variant, bench, "t1", seed, cap=20) for seed in (0, 1)]
    assert all(1 <= h <= 12 for h in hits), hits


def test_the_loop_reproduces_and_counts_until_the_top(bench):
    assert trials_to_top("current", bench, "t1", 0, cap=20) == trials_to_top("current", bench, "t1", 0, cap=20)
    assert trials_to_top("current", bench, "t1", 0, cap=20, shuffled=True) >= 1
    assert math.isinf(trials_to_top("current", bench, "t1", 0, cap=0))

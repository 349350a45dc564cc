"""Tabular benchmarks and the table-lookup child trainer.

The real tables are checked against the CSV read independently with the csv module; the file
loader is checked on small synthetic Parquet and CSV tables, error paths included.
"""

from __future__ import annotations

import csv
import math
import re
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transfer_automl.children.table import TableChildTrainer
from transfer_automl.errors import ConfigError, SearchSpaceError, TaskError
from transfer_automl.space.decisions import Decision, SearchSpace
from transfer_automl.tasks.benchmarks import (
    NB201_OPS,
    TableBenchmark,
    available_benchmarks,
    load_benchmark,
    table_benchmark_from_file,
)
from transfer_automl.trial_status import STATUS_INVALID, STATUS_OK

BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"
TNB_CSV = BENCHMARKS / "transnasbench101_micro" / "tnb101_micro_final_val.csv"
NB201_CSV = BENCHMARKS / "nasbench201" / "nb201_merged_3tasks.csv"
TNB_TASKS = ["class_scene", "class_object", "room_layout", "jigsaw", "segmentsemantic", "normal", "autoencoder"]
NB201_TASKS = ["cifar10", "cifar100", "imagenet"]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# -- TransNAS-Bench-101 micro -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tnb() -> TableBenchmark:
    if not TNB_CSV.is_file():
        pytest.skip(f"shared benchmark not found at {TNB_CSV}")
    return load_benchmark("transnasbench101-micro", BENCHMARKS)


@pytest.fixture(scope="module")
def tnb_rows() -> list[dict[str, str]]:
    if not TNB_CSV.is_file():
        pytest.skip(f"shared benchmark not found at {TNB_CSV}")
    return _csv_rows(TNB_CSV)


def test_tnb_shape_and_space(tnb):
    assert tnb.num_rows == 4096
    assert tnb.tasks == TNB_TASKS
    assert tnb.space.names == [f"edge{i}" for i in range(6)]
    assert all(d.choices == (0, 1, 2, 3) for d in tnb.space.decisions)
    assert "none" in tnb.space.decisions[0].description and "conv3x3" in tnb.space.decisions[0].description
    actions = tnb.actions_of_rows()
    assert actions.shape == (4096, 6)
    assert len({tuple(r) for r in actions.tolist()}) == 4096 == tnb.space.size()


def test_tnb_every_value_matches_the_csv(tnb, tnb_rows):
    leading_zero = 0
    for row in tnb_rows:
        digits = row["op_indices"].zfill(6)
        leading_zero += digits.startswith("0")
        actions = [int(c) for c in digits]
        for task in TNB_TASKS:
            assert tnb.value(task, actions) == float(row[task])
            assert tnb.test_value(task, actions) == float(row[task])  # no test metric: validation
    assert leading_zero == 1024  # a quarter of the cells would break if op_indices were read as int


def test_tnb_leading_zero_cell_and_config_lookup(tnb, tnb_rows):
    row = next(r for r in tnb_rows if r["op_indices"] == "002123")
    assert tnb.value("jigsaw", [0, 0, 2, 1, 2, 3]) == float(row["jigsaw"])
    config = {f"edge{i}": int(c) for i, c in enumerate("002123")}
    assert tnb.value_of_config("room_layout", config) == float(row["room_layout"])
    assert tnb.value_of_config("room_layout", config) < 0  # negative loss, higher is better


def test_tnb_best_and_normalization(tnb, tnb_rows):
    for task in TNB_TASKS:
        column = [float(r[task]) for r in tnb_rows]
        best = max(column)
        first_best = column.index(best)  # ties: the lowest row
        assert tnb.best_value(task) == best
        assert tnb.best_actions(task) == [int(c) for c in tnb_rows[first_best]["op_indices"].zfill(6)]
        assert tnb.normalized(task, best) == pytest.approx(1.0)
        assert tnb.normalized(task, float(np.median(column))) == pytest.approx(0.0, abs=1e-12)
        np.testing.assert_array_equal(tnb.all_values(task), np.array(column))
    ties = [float(r["autoencoder"]) for r in tnb_rows].count(tnb.best_value("autoencoder"))
    assert ties == 2  # the tie rule is exercised on real data


# -- NAS-Bench-201 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nb201() -> TableBenchmark:
    if not NB201_CSV.is_file():
        pytest.skip(f"shared benchmark not found at {NB201_CSV}")
    return load_benchmark("nasbench201", BENCHMARKS)


@pytest.fixture(scope="module")
def nb201_rows() -> list[dict[str, str]]:
    if not NB201_CSV.is_file():
        pytest.skip(f"shared benchmark not found at {NB201_CSV}")
    return _csv_rows(NB201_CSV)


def _arch_actions(arch: str) -> list[int]:
    ops = re.findall(r"([a-z0-9_]+)~\d", arch)
    assert len(ops) == 6
    return [NB201_OPS.index(op) for op in ops]


def test_nb201_shape_and_space(nb201):
    assert nb201.num_rows == 15625 == nb201.space.size()
    assert nb201.tasks == NB201_TASKS
    assert nb201.space.names == [f"edge{i}" for i in range(6)]
    assert all(
        d.choices == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
        for d in nb201.space.decisions
    )
    assert all(nb201.has_test(t) for t in NB201_TASKS)


def test_nb201_values_match_the_csv(nb201, nb201_rows):
    for row in nb201_rows[:: 997] + nb201_rows[-3:]:
        actions = _arch_actions(row["arch_str"])
        assert nb201.row(actions) == int(row["arch_index"])
        for task in NB201_TASKS:
            assert nb201.value(task, actions) == float(row[f"{task}_val200_mean"])
            assert nb201.test_value(task, actions) == float(row[f"{task}_test200_mean"])
        config = dict(zip(nb201.space.names, re.findall(r"([a-z0-9_]+)~\d", row["arch_str"]), strict=True))
        assert nb201.value_of_config("cifar100", config) == float(row["cifar100_val200_mean"])


def test_nb201_published_optimum(nb201):
    actions = nb201.actions_of_rows()
    for task, published in zip(NB201_TASKS, (94.37, 73.51, 47.31), strict=True):
        best_test = max(nb201.test_value(task, a) for a in actions)
        assert best_test == pytest.approx(published, abs=0.1)


def test_nb201_best_and_normalization(nb201, nb201_rows):
    for task in NB201_TASKS:
        column = [float(r[f"{task}_val200_mean"]) for r in nb201_rows]
        best_row = column.index(max(column))
        assert nb201.best_actions(task) == _arch_actions(nb201_rows[best_row]["arch_str"])
        assert nb201.normalized(task, nb201.best_value(task)) == pytest.approx(1.0)
        median_row = int(np.argsort(column, kind="stable")[len(column) // 2])  # odd count: a real cell
        median_actions = _arch_actions(nb201_rows[median_row]["arch_str"])
        assert nb201.normalized(task, nb201.value(task, median_actions)) == 0.0


def test_nb201_loads_fast():
    if not NB201_CSV.is_file():
        pytest.skip(f"shared benchmark not found at {NB201_CSV}")
    started = time.perf_counter()
    load_benchmark("nasbench201", BENCHMARKS)
    assert time.perf_counter() - started < 2.0


# -- data dir resolution ----------------------------------------------------------------------


def test_data_dir_from_env_and_cwd(monkeypatch, tmp_path):
    if not TNB_CSV.is_file():
        pytest.skip(f"shared benchmark not found at {TNB_CSV}")
    monkeypatch.setenv("TAML_BENCHMARK_DIR", str(BENCHMARKS))
    assert load_benchmark("transnasbench101-micro").num_rows == 4096
    monkeypatch.delenv("TAML_BENCHMARK_DIR")
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the repo: ../shared/data/benchmarks
    assert load_benchmark("transnasbench101-micro").num_rows == 4096
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaskError, match=re.escape(str(Path("../shared/data/benchmarks")))):
        load_benchmark("transnasbench101-micro")


def test_missing_data_dir_and_unknown_name(monkeypatch, tmp_path):
    monkeypatch.delenv("TAML_BENCHMARK_DIR", raising=False)
    with pytest.raises(TaskError, match=re.escape(str(tmp_path / "nasbench201" / "nb201_merged_3tasks.csv"))):
        load_benchmark("nasbench201", tmp_path)
    monkeypatch.setenv("TAML_BENCHMARK_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(TaskError, match="nowhere"):
        load_benchmark("transnasbench101-micro")
    with pytest.raises(TaskError, match="nasbench201"):
        load_benchmark("nasbench301")
    assert available_benchmarks() == ["nasbench201", "taml-text-real", "transnasbench101-micro"]


def test_tnb_op_indices_stored_as_int_are_zero_padded(tmp_path):
    folder = tmp_path / "transnasbench101_micro"
    folder.mkdir()
    metrics = ",".join(TNB_TASKS)
    lines = [f"op_indices,{metrics}", "2123," + ",".join(["1.0"] * 7), "333333," + ",".join(["2.0"] * 7)]
    (folder / "tnb101_micro_final_val.csv").write_text("\n".join(lines) + "\n")
    bench = load_benchmark("transnasbench101-micro", tmp_path)
    assert bench.value("jigsaw", [0, 0, 2, 1, 2, 3]) == 1.0
    assert bench.value("jigsaw", [3] * 6) == 2.0
    with pytest.raises(TaskError, match="not in the table"):
        bench.value("jigsaw", [1] * 6)


def test_nb201_malformed_arch_str(tmp_path):
    folder = tmp_path / "nasbench201"
    folder.mkdir()
    header = ["arch_str"] + [f"{t}_{k}" for t in NB201_TASKS for k in ("val200_mean", "test200_mean")]
    good = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    bad = "|none~0|+|none~0|none~1|+|none~0|conv_5x5~1|none~2|"
    lines = [",".join(header), ",".join([good] + ["1"] * 6), ",".join([bad] + ["1"] * 6)]
    (folder / "nb201_merged_3tasks.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskError, match=r"row 1 is .*conv_5x5"):
        load_benchmark("nasbench201", tmp_path)


# -- the trainer ------------------------------------------------------------------------------


def test_trainer_on_nb201(nb201, nb201_rows):
    trainer = TableChildTrainer(nb201)
    row = nb201_rows[1]
    config = dict(zip(nb201.space.names, re.findall(r"([a-z0-9_]+)~\d", row["arch_str"]), strict=True))
    result = trainer.train(config, "cifar10", seed=3)
    assert result.status == STATUS_OK
    assert result.val_accuracy == float(row["cifar10_val200_mean"])
    assert result.test_accuracy == float(row["cifar10_test200_mean"])
    assert result.train_steps == 0 and result.duration_s >= 0 and result.error == ""
    with pytest.raises(TaskError, match="cifar100"):
        trainer.train(config, "svhn")
    with pytest.raises(SearchSpaceError):
        trainer.train({**config, "edge0": "conv_7x7"}, "cifar10")


def test_trainer_without_test_metric_and_missing_cell(tmp_path):
    path = _write_parquet(tmp_path / "t.parquet", _SYNTHETIC)
    bench = table_benchmark_from_file(path, metric_columns=["acc_a", "acc_b"], test_columns={"acc_a": "test_a"})
    trainer = TableChildTrainer(bench)
    config = {"lr": 0.01, "layers": 2, "act": "relu", "flag": True, "width": 64}
    result = trainer.train(config, "acc_b")
    assert (result.status, result.val_accuracy, result.test_accuracy) == (STATUS_OK, 0.4, 0.4)
    assert trainer.train(config, "acc_a").test_accuracy == 0.55
    missing = trainer.train({**config, "act": "tanh", "lr": 0.1}, "acc_a")
    assert missing.status == STATUS_INVALID and "not in the table" in missing.error


# -- any table file ---------------------------------------------------------------------------

_SYNTHETIC = {
    "lr": [0.1, 0.01, 0.01, 0.001],
    "layers": [2, 2, 10, 3],
    "act": ["relu", "relu", "tanh", "gelu"],
    "flag": [True, True, False, True],
    "width": [64, 64, 64, 64],  # a single value is a decision with one choice
    "acc_a": [0.5, 0.6, 0.9, 0.7],
    "acc_b": [0.1, 0.4, 0.3, 0.2],
    "test_a": [0.45, 0.55, 0.85, 0.65],
}


def _write_parquet(path: Path, data: dict) -> Path:
    pq.write_table(pa.table(data), path)
    return path


def _write_csv(path: Path, data: dict, text: dict[str, list[str]] | None = None) -> Path:
    columns = {**{k: [str(v).lower() if isinstance(v, bool) else str(v) for v in vals] for k, vals in data.items()},
               **(text or {})}
    names = list(columns)
    lines = [",".join(names)] + [",".join(columns[n][i] for n in names) for i in range(len(columns[names[0]]))]
    path.write_text("\n".join(lines) + "\n")
    return path


def _check_synthetic(bench: TableBenchmark) -> None:
    assert bench.tasks == ["acc_a", "acc_b"]
    assert bench.space.names == ["lr", "layers", "act", "flag", "width"]
    choices = {d.name: d.choices for d in bench.space.decisions}
    assert choices == {
        "lr": (0.001, 0.01, 0.1), "layers": (2, 3, 10), "act": ("gelu", "relu", "tanh"),
        "flag": (False, True), "width": (64,),
    }
    assert all(type(c) is float for c in choices["lr"]) and all(type(c) is int for c in choices["layers"])
    config = {"lr": 0.01, "layers": 10, "act": "tanh", "flag": False, "width": 64}
    assert bench.actions_of_rows().tolist()[2] == bench.space.encode(config) == [1, 2, 2, 0, 0]
    assert bench.value_of_config("acc_a", config) == 0.9
    assert bench.test_value("acc_a", bench.space.encode(config)) == 0.85
    assert bench.test_value("acc_b", bench.space.encode(config)) == 0.3  # no test column: validation
    assert bench.best_actions("acc_b") == bench.space.encode(
        {"lr": 0.01, "layers": 2, "act": "relu", "flag": True, "width": 64}
    )
    assert bench.normalized("acc_a", 0.9) == pytest.approx(1.0)
    assert bench.normalized("acc_a", 0.65) == pytest.approx(0.0)  # median of 0.5, 0.6, 0.7, 0.9
    assert bench.normalized("acc_a", 0.5) == pytest.approx(-0.6)
    with pytest.raises(TaskError, match=r"'act': 'gelu'"):
        bench.value_of_config("acc_a", {**config, "act": "gelu"})
    with pytest.raises(TaskError, match="acc_c"):
        bench.value("acc_c", [0, 0, 0, 0, 0])


def test_parquet_round_trip_infers_space(tmp_path):
    path = _write_parquet(tmp_path / "synthetic.parquet", _SYNTHETIC)
    bench = table_benchmark_from_file(path, metric_columns=["acc_a", "acc_b"], test_columns={"acc_a": "test_a"})
    assert bench.name == bench.space.name == "synthetic"
    _check_synthetic(bench)


def test_csv_round_trip_infers_the_same_space(tmp_path):
    parquet = table_benchmark_from_file(
        _write_parquet(tmp_path / "s.parquet", _SYNTHETIC), ["acc_a", "acc_b"], test_columns={"acc_a": "test_a"}
    )
    bench = table_benchmark_from_file(
        _write_csv(tmp_path / "s.csv", _SYNTHETIC), ["acc_a", "acc_b"], test_columns={"acc_a": "test_a"}, name="x"
    )
    assert bench.name == "x"
    _check_synthetic(bench)
    assert bench.space.fingerprint() == parquet.space.fingerprint()


def test_csv_keeps_leading_zeros_as_strings(tmp_path):
    path = _write_csv(tmp_path / "z.csv", {"acc": [1.0, 2.0, 3.0]}, text={"ops": ["012", "120", "7"]})
    bench = table_benchmark_from_file(path, ["acc"])
    assert bench.space.decisions[0].choices == ("012", "120", "7")
    assert bench.value_of_config("acc", {"ops": "012"}) == 1.0
    mixed = _write_csv(tmp_path / "m.csv", {"acc": [1.0, 2.0, 3.0]}, text={"lr": ["1", "0.5", "1e-3"]})
    assert table_benchmark_from_file(mixed, ["acc"]).space.decisions[0].choices == (0.001, 0.5, 1.0)


def test_given_space_is_used_and_csv_text_matches_typed_choices(tmp_path):
    space = SearchSpace("given", (
        Decision("layers", (10, 3, 2, 99)), Decision("act", ("relu", "tanh", "gelu", "elu")),
        Decision("flag", (True, False)), Decision("lr", (0.1, 0.01, 0.001)), Decision("width", (64, 128)),
    ))
    for path in (_write_parquet(tmp_path / "g.parquet", _SYNTHETIC), _write_csv(tmp_path / "g.csv", _SYNTHETIC)):
        bench = table_benchmark_from_file(path, ["acc_a", "acc_b"], test_columns={"acc_a": "test_a"}, space=space)
        assert bench.space is space
        assert bench.value_of_config("acc_b", {"layers": 3, "act": "gelu", "flag": True, "lr": 0.001, "width": 64}) == 0.2
        assert bench.actions_of_rows().tolist()[2] == [0, 1, 1, 1, 0]


def test_given_space_rejects_values_outside_its_choices(tmp_path):
    space = SearchSpace("given", (
        Decision("lr", (0.1, 0.01, 0.001)), Decision("layers", (2, 3)), Decision("act", ("relu", "tanh", "gelu")),
        Decision("flag", (True, False)), Decision("width", (64,)),
    ))
    for path in (_write_parquet(tmp_path / "g.parquet", _SYNTHETIC), _write_csv(tmp_path / "g.csv", _SYNTHETIC)):
        with pytest.raises(SearchSpaceError, match=r"column 'layers' row 2: value '?10'? is not one of"):
            table_benchmark_from_file(path, ["acc_a", "acc_b"], decision_columns=None, space=space,
                                      test_columns={"acc_a": "test_a"})
    missing = SearchSpace("m", (Decision("depth", (1, 2)),))
    with pytest.raises(TaskError, match="lacks column 'depth'"):
        table_benchmark_from_file(tmp_path / "g.parquet", ["acc_a"], space=missing)
    with pytest.raises(ConfigError, match="differ from the space"):
        table_benchmark_from_file(tmp_path / "g.parquet", ["acc_a"], decision_columns=["lr"], space=space)


def test_explicit_decision_columns(tmp_path):
    path = _write_parquet(tmp_path / "e.parquet", _SYNTHETIC)
    bench = table_benchmark_from_file(path, ["acc_a"], decision_columns=["act", "lr"])
    assert bench.space.names == ["act", "lr"] and bench.tasks == ["acc_a"]
    assert bench.value_of_config("acc_a", {"act": "gelu", "lr": 0.001}) == 0.7
    with pytest.raises(TaskError, match=r"configuration \{'act': 'relu', 'layers': 2\} in 2 rows"):
        table_benchmark_from_file(path, ["acc_a"], decision_columns=["act", "layers"])
    with pytest.raises(ConfigError, match="both decisions and metrics"):
        table_benchmark_from_file(path, ["acc_a"], decision_columns=["act", "acc_a"])


def test_file_errors(tmp_path):
    with pytest.raises(TaskError, match=re.escape(str(tmp_path / "absent.parquet"))):
        table_benchmark_from_file(tmp_path / "absent.parquet", ["acc"])
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(TaskError, match="garbage.parquet is unreadable"):
        table_benchmark_from_file(garbage, ["acc"])
    other = tmp_path / "table.json"
    other.write_text("{}")
    with pytest.raises(TaskError, match="unknown format"):
        table_benchmark_from_file(other, ["acc"])
    path = _write_parquet(tmp_path / "ok.parquet", _SYNTHETIC)
    with pytest.raises(ConfigError, match="metric_columns is required"):
        table_benchmark_from_file(path)
    with pytest.raises(TaskError, match="lacks column 'acc_z'"):
        table_benchmark_from_file(path, ["acc_z"])
    with pytest.raises(TaskError, match="lacks column 'test_z'"):
        table_benchmark_from_file(path, ["acc_a"], test_columns={"acc_a": "test_z"})
    with pytest.raises(ConfigError, match="not metric columns"):
        table_benchmark_from_file(path, ["acc_a"], test_columns={"acc_b": "test_a"})


def test_metric_column_errors(tmp_path):
    text_metric = _write_parquet(tmp_path / "t.parquet", {**_SYNTHETIC, "acc_a": ["a", "b", "c", "d"]})
    with pytest.raises(TaskError, match=r"metric column 'acc_a' has type string"):
        table_benchmark_from_file(text_metric, ["acc_a"])
    nan_metric = _write_parquet(tmp_path / "n.parquet", {**_SYNTHETIC, "acc_b": [0.1, math.nan, None, 0.3]})
    with pytest.raises(TaskError, match=r"n.parquet: metric column 'acc_b' .* in 2 row\(s\), first row 1"):
        table_benchmark_from_file(nan_metric, ["acc_a", "acc_b"])
    nan_csv = _write_csv(tmp_path / "n.csv", {**_SYNTHETIC, "acc_b": ["0.1", "", "NaN", "0.3"]})
    with pytest.raises(TaskError, match=r"'acc_b' .* in 2 row\(s\)"):
        table_benchmark_from_file(nan_csv, ["acc_a", "acc_b"])
    nan_test = _write_parquet(tmp_path / "nt.parquet", {**_SYNTHETIC, "test_a": [0.1, 0.2, math.nan, 0.3]})
    with pytest.raises(TaskError, match="test column 'test_a'"):
        table_benchmark_from_file(nan_test, ["acc_a"], test_columns={"acc_a": "test_a"})


def test_table_content_errors(tmp_path):
    dup = _write_parquet(tmp_path / "d.parquet", {**_SYNTHETIC, "layers": [2, 2, 10, 3], "lr": [0.1, 0.1, 0.01, 0.001]})
    with pytest.raises(TaskError, match=r"d.parquet has configuration .*'lr': 0.1.* in 2 rows \[0, 1\]"):
        table_benchmark_from_file(dup, ["acc_a", "acc_b"], test_columns={"acc_a": "test_a"})
    empty = tmp_path / "empty.csv"
    empty.write_text("lr,acc\n")
    with pytest.raises(TaskError, match="empty.csv has no rows"):
        table_benchmark_from_file(empty, ["acc"])
    empty_parquet = _write_parquet(tmp_path / "e.parquet", {"lr": pa.array([], pa.float64()), "acc": pa.array([], pa.float64())})
    with pytest.raises(TaskError, match="has no rows"):
        table_benchmark_from_file(empty_parquet, ["acc"])
    null_decision = _write_parquet(tmp_path / "nd.parquet", {**_SYNTHETIC, "act": ["relu", None, "tanh", "gelu"]})
    with pytest.raises(TaskError, match=r"decision column 'act' is empty in row 1"):
        table_benchmark_from_file(null_decision, ["acc_a"], test_columns={"acc_a": "test_a"})
    only_metrics = _write_parquet(tmp_path / "m.parquet", {"acc": [1.0]})
    with pytest.raises(ConfigError, match="no decision columns"):
        table_benchmark_from_file(only_metrics, ["acc"])


def test_single_row_and_single_value_columns(tmp_path):
    path = _write_parquet(tmp_path / "one.parquet", {"op": ["conv"], "acc": [0.5]})
    bench = table_benchmark_from_file(path, ["acc"])
    assert bench.value("acc", [0]) == 0.5 and bench.best_actions("acc") == [0]
    with pytest.raises(TaskError, match="normalization is undefined"):
        bench.normalized("acc", 0.5)


def test_lookup_argument_errors(tmp_path):
    bench = table_benchmark_from_file(_write_parquet(tmp_path / "a.parquet", _SYNTHETIC), ["acc_a", "acc_b"],
                                      test_columns={"acc_a": "test_a"})
    with pytest.raises(SearchSpaceError, match="5 decisions, got 2"):
        bench.value("acc_a", [0, 0])
    with pytest.raises(SearchSpaceError, match=r"'layers': index 3 outside 0..2"):
        bench.value("acc_a", [0, 3, 0, 0, 0])
    with pytest.raises(SearchSpaceError):
        bench.value_of_config("acc_a", {"lr": 0.5})
    with pytest.raises(ValueError):  # read-only: callers cannot corrupt the table
        bench.all_values("acc_a")[0] = 1.0


def test_direct_construction_checks_shapes():
    space = SearchSpace("s", (Decision("a", (0, 1)),))
    with pytest.raises(ConfigError, match="shape"):
        TableBenchmark("b", space, ["t"], np.zeros((2, 2), dtype=int), {"t": np.zeros(2)})
    with pytest.raises(SearchSpaceError, match="index 2 in row 1"):
        TableBenchmark("b", space, ["t"], np.array([[0], [2]]), {"t": np.zeros(2)})
    with pytest.raises(ConfigError, match="differ from tasks"):
        TableBenchmark("b", space, ["t"], np.array([[0], [1]]), {"u": np.zeros(2)})

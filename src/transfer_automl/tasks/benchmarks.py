"""Tabular NAS benchmarks: every configuration of a categorical space with its metric per task.

A `TableBenchmark` answers "what would this configuration score on this task" by an O(1) lookup,
so a search can be measured without training networks (the Syne Tune simulator-backend idea).

Two published tables load by name (`load_benchmark`), from `<data dir>/...` where the data dir is
`data_dir`, else `$TAML_BENCHMARK_DIR`, else `../shared/data/benchmarks` relative to the current
directory:

- "transnasbench101-micro": TransNAS-Bench-101 micro (cell) space, 4,096 cells x 7 tasks, final
  validation metrics only (so `test_value` equals `value`).
- "nasbench201": NAS-Bench-201, 15,625 cells x cifar10 / cifar100 / imagenet (ImageNet16-120),
  200-epoch validation mean and 200-epoch test mean.

Any other table loads with `table_benchmark_from_file` (Parquet or CSV: decision columns plus one
metric column per task). Row numbers in messages count data rows from 0, header excluded.
Every metric is higher-is-better; `normalized` maps a task's median to 0 and its best cell to 1
so that tasks with different metrics can be pooled.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from transfer_automl.errors import ConfigError, SearchSpaceError, TaskError
from transfer_automl.registry import Registry
from transfer_automl.space.decisions import Choice, Decision, SearchSpace

BENCHMARK_DIR_ENV = "TAML_BENCHMARK_DIR"
DEFAULT_BENCHMARK_DIR = Path("../shared/data/benchmarks")

TNB101_MICRO_FILE = "transnasbench101_micro/tnb101_micro_final_val.csv"
TNB101_MICRO_TASKS = (
    "class_scene", "class_object", "room_layout", "jigsaw", "segmentsemantic", "normal", "autoencoder",
)
TNB101_MICRO_OPS = ("none", "skip", "conv1x1", "conv3x3")  # op_indices digit -> op

NB201_FILE = "nasbench201/nb201_merged_3tasks.csv"
NB201_TASKS = ("cifar10", "cifar100", "imagenet")
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

# Both cells are the NAS-Bench-201 cell: edge i feeds node `to` from node `from`.
CELL_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


@dataclass
class TableBenchmark:
    """A table of (configuration, metric per task) rows over a categorical search space."""

    name: str
    space: SearchSpace  # categorical decisions; a row's configuration is one choice index each
    tasks: list[str]
    row_actions: np.ndarray = field(repr=False)  # [rows, decisions] int64 choice indices
    metric: dict[str, np.ndarray] = field(repr=False)  # task -> [rows] validation metric, higher is better
    test_metric: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # task -> [rows], optional
    source: str = ""  # the file the table came from, for messages

    def __post_init__(self) -> None:
        where = self.source or self.name
        self.tasks = list(self.tasks)
        if not self.tasks:
            raise ConfigError(f"benchmark {self.name!r}: no tasks")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"benchmark {self.name!r}: task names repeat: {self.tasks}")
        if set(self.metric) != set(self.tasks):
            raise ConfigError(
                f"benchmark {self.name!r}: metric tasks {sorted(self.metric)} differ from tasks {self.tasks}"
            )
        extra = sorted(set(self.test_metric) - set(self.tasks))
        if extra:
            raise ConfigError(f"benchmark {self.name!r}: test metric for unknown task(s) {extra}")

        actions = np.array(self.row_actions, dtype=np.int64, copy=True)
        if actions.ndim != 2 or actions.shape[1] != len(self.space):
            raise ConfigError(
                f"benchmark {self.name!r}: row_actions has shape {actions.shape}; "
                f"expected [rows, {len(self.space)}]"
            )
        rows = actions.shape[0]
        if rows == 0:
            raise TaskError(f"benchmark {self.name!r}: {where} has no rows")
        for j, decision in enumerate(self.space.decisions):
            bad = np.flatnonzero((actions[:, j] < 0) | (actions[:, j] >= len(decision.choices)))
            if len(bad):
                raise SearchSpaceError(
                    f"benchmark {self.name!r}: decision {decision.name!r} has index {actions[bad[0], j]} "
                    f"in row {bad[0]}, outside 0..{len(decision.choices) - 1}"
                )
        actions.setflags(write=False)
        self.row_actions = actions
        self.metric = {t: _checked_column(self.metric[t], rows, f"{where}: metric of task {t!r}") for t in self.tasks}
        self.test_metric = {
            t: _checked_column(v, rows, f"{where}: test metric of task {t!r}") for t, v in self.test_metric.items()
        }

        # Mixed-radix key of each row: the lookup index and the duplicate check.
        self._cards = self.space.cardinalities
        self._strides = [math.prod(self._cards[j + 1 :]) for j in range(len(self._cards))]
        keys = _row_keys(actions, self._strides, self.space.size())
        unique, counts = np.unique(keys, return_counts=True)
        if (counts > 1).any():
            key = unique[np.argmax(counts > 1)]
            dup_rows = np.flatnonzero(keys == key)
            raise TaskError(
                f"benchmark {self.name!r}: {where} has configuration "
                f"{self.space.decode(actions[dup_rows[0]].tolist())} in {len(dup_rows)} rows "
                f"{dup_rows[:10].tolist()}; each configuration must appear once"
            )
        self._row_of: dict[int, int] = dict(zip(keys.tolist(), range(rows), strict=True))
        self._median = {t: float(np.median(v)) for t, v in self.metric.items()}
        self._best_row = {t: int(np.argmax(v)) for t, v in self.metric.items()}  # first max = lowest row

    # -- lookups ------------------------------------------------------------------------------

    @property
    def num_rows(self) -> int:
        return int(self.row_actions.shape[0])

    def row(self, actions: Sequence[int]) -> int:
        """Row index of a configuration given as one choice index per decision."""
        if len(actions) != len(self._cards):
            raise SearchSpaceError(
                f"benchmark {self.name!r}: space has {len(self._cards)} decisions, got {len(actions)} indices"
            )
        key = 0
        for j, raw in enumerate(actions):
            i = int(raw)
            if not 0 <= i < self._cards[j]:
                raise SearchSpaceError(
                    f"benchmark {self.name!r}: decision {self.space.decisions[j].name!r}: "
                    f"index {i} outside 0..{self._cards[j] - 1}"
                )
            key += i * self._strides[j]
        found = self._row_of.get(key)
        if found is None:
            raise TaskError(
                f"benchmark {self.name!r}: configuration {self.space.decode(actions)} is not in the table"
                + (f" {self.source}" if self.source else "")
            )
        return found

    def value(self, task: str, actions: Sequence[int]) -> float:
        """Validation metric (higher is better) of the configuration on `task`."""
        return float(self._column(task)[self.row(actions)])

    def test_value(self, task: str, actions: Sequence[int]) -> float:
        """Test metric where the table has one for `task`, else the validation metric."""
        column = self.test_metric.get(task)
        if column is None:
            return self.value(task, actions)
        return float(column[self.row(actions)])

    def value_of_config(self, task: str, config: Mapping[str, Any]) -> float:
        return self.value(task, self.space.encode(config))

    def has_test(self, task: str) -> bool:
        self._column(task)
        return task in self.test_metric

    # -- statistics ---------------------------------------------------------------------------

    def normalized(self, task: str, value: float) -> float:
        """(value - median) / (max - median) over the task's rows: best cell 1, median 0.

        The median of an even number of rows is the mean of the middle two, so it may fall
        between cells. Raises TaskError where max equals median (undefined scale).
        """
        best = self.best_value(task)
        median = self._median[task]
        if not best > median:
            raise TaskError(
                f"benchmark {self.name!r}: task {task!r} has max {best} equal to its median; "
                "normalization is undefined"
            )
        return float((value - median) / (best - median))

    def median_value(self, task: str) -> float:
        self._column(task)
        return self._median[task]

    def best_value(self, task: str) -> float:
        column = self._column(task)
        return float(column[self._best_row[task]])

    def best_actions(self, task: str) -> list[int]:
        """Choice indices of the best cell on `task` (ties: the lowest row)."""
        self._column(task)
        return self.row_actions[self._best_row[task]].tolist()

    def all_values(self, task: str) -> np.ndarray:
        """[rows] validation metric of every row, read-only, in row order."""
        return self._column(task)

    def actions_of_rows(self) -> np.ndarray:
        """[rows, decisions] int64 choice indices, read-only, in row order."""
        return self.row_actions

    def _column(self, task: str) -> np.ndarray:
        column = self.metric.get(task)
        if column is None:
            raise TaskError(f"unknown task {task!r} of benchmark {self.name!r}; tasks: {self.tasks}")
        return column


def _checked_column(values: Any, rows: int, what: str) -> np.ndarray:
    column = np.array(values, dtype=np.float64, copy=True)
    if column.shape != (rows,):
        raise ConfigError(f"{what}: shape {column.shape}, expected ({rows},)")
    bad = np.flatnonzero(~np.isfinite(column))
    if len(bad):
        raise TaskError(f"{what}: {len(bad)} row(s) are NaN or infinite, first row {bad[0]}")
    column.setflags(write=False)
    return column


def _row_keys(actions: np.ndarray, strides: list[int], size: int) -> np.ndarray:
    if size < 2**62:
        return actions @ np.asarray(strides, dtype=np.int64)
    return np.array([sum(int(a) * s for a, s in zip(row, strides, strict=True)) for row in actions], dtype=object)


# -- named benchmarks -------------------------------------------------------------------------


def benchmark_dir(explicit: str | Path | None = None) -> Path:
    """`explicit`, else $TAML_BENCHMARK_DIR, else ../shared/data/benchmarks (relative to cwd)."""
    if explicit:
        return Path(explicit)
    if os.environ.get(BENCHMARK_DIR_ENV):
        return Path(os.environ[BENCHMARK_DIR_ENV])
    return DEFAULT_BENCHMARK_DIR


def available_benchmarks() -> list[str]:
    return sorted(BENCHMARKS)


def load_benchmark(name: str, data_dir: str | Path | None = None) -> TableBenchmark:
    """Load a published benchmark by name ("transnasbench101-micro", "nasbench201")."""
    if name not in BENCHMARKS:
        raise TaskError(f"unknown benchmark {name!r}; known: {available_benchmarks()}")
    relative, loader = BENCHMARKS[name]
    # Tables built by this project ship in the package; data_dir still overrides.
    root = PACKAGED_TABLE_DIR if name in PACKAGED_TABLES and not data_dir else benchmark_dir(data_dir)
    path = root / relative
    if not path.is_file():
        raise TaskError(
            f"benchmark {name!r}: file {path} does not exist (data dir {root}; pass data_dir "
            f"or set ${BENCHMARK_DIR_ENV})"
        )
    return loader(path)


def _load_tnb101_micro(path: Path) -> TableBenchmark:
    # op_indices must be read as text: inferred as int64, "002123" would become 2123.
    table = _read_table(path, string_columns=("op_indices",))
    ops = _require_column(table, "op_indices", path)
    if ops.null_count:
        raise TaskError(f"{path}: column 'op_indices' is empty in row {_first_null(ops)}")
    padded = pc.utf8_lpad(ops, width=6, padding="0")
    long = np.flatnonzero(pc.utf8_length(padded).to_numpy() != 6)
    if len(long):
        raise TaskError(f"{path}: column 'op_indices' row {long[0]} is {ops[int(long[0])]} (not 6 digits)")
    digits = np.frombuffer("".join(padded.to_pylist()).encode("ascii"), dtype=np.uint8).reshape(-1, 6)
    actions = digits.astype(np.int64) - ord("0")
    bad = np.flatnonzero(((actions < 0) | (actions > 3)).any(axis=1))
    if len(bad):
        raise TaskError(f"{path}: column 'op_indices' row {bad[0]} is {ops[int(bad[0])]}; digits must be 0-3")
    legend = ", ".join(f"{i} {op}" for i, op in enumerate(TNB101_MICRO_OPS))
    space = SearchSpace("transnasbench101-micro", tuple(
        Decision(f"edge{i}", (0, 1, 2, 3), description=f"op on cell edge node{to}<-node{src}: {legend}")
        for i, (to, src) in enumerate(CELL_EDGES)
    ))
    metric = {t: _numeric_column(table, t, path, "metric") for t in TNB101_MICRO_TASKS}
    return TableBenchmark("transnasbench101-micro", space, list(TNB101_MICRO_TASKS), actions, metric,
                          source=str(path))


def _load_nasbench201(path: Path) -> TableBenchmark:
    table = _read_table(path)
    arch = _require_column(table, "arch_str", path)
    if arch.null_count:
        raise TaskError(f"{path}: column 'arch_str' is empty in row {_first_null(arch)}")
    actions = np.array([_parse_nb201_arch(s, path, i) for i, s in enumerate(arch.to_pylist())], dtype=np.int64)
    space = SearchSpace("nasbench201", tuple(
        Decision(f"edge{i}", NB201_OPS, description=f"op on cell edge node{to}<-node{src}")
        for i, (to, src) in enumerate(CELL_EDGES)
    ))
    metric = {t: _numeric_column(table, f"{t}_val200_mean", path, "metric") for t in NB201_TASKS}
    test = {t: _numeric_column(table, f"{t}_test200_mean", path, "test") for t in NB201_TASKS}
    return TableBenchmark("nasbench201", space, list(NB201_TASKS), actions, metric, test, source=str(path))


_NB201_OP_INDEX = {op: i for i, op in enumerate(NB201_OPS)}


def _parse_nb201_arch(arch: str, path: Path, row: int) -> list[int]:
    """'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' -> six op indices in edge order."""
    nodes = arch.split("+")
    out: list[int] = []
    if len(nodes) == 3:
        for to, node in enumerate(nodes, start=1):
            parts = node.strip("|").split("|")
            if len(parts) != to:
                break
            for src, part in enumerate(parts):
                op, _, from_node = part.partition("~")
                if from_node != str(src) or op not in _NB201_OP_INDEX:
                    break
                out.append(_NB201_OP_INDEX[op])
    if len(out) != 6:
        raise TaskError(
            f"{path}: column 'arch_str' row {row} is {arch!r}, not a NAS-Bench-201 cell "
            f"'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' with ops {list(NB201_OPS)}"
        )
    return out


def _load_self_described(path: Path) -> TableBenchmark:
    """A table whose Parquet metadata names its space and tasks (`benchmarks/real_table.py` writes them)."""
    meta = _read_table(path).schema.metadata or {}
    try:
        from transfer_automl.space.io import space_from_dict

        space = space_from_dict(json.loads(meta[b"taml.space"]), source=str(path))
        tasks, name = json.loads(meta[b"taml.tasks"]), json.loads(meta[b"taml.name"])
    except (KeyError, ValueError) as exc:
        raise TaskError(f"{path}: Parquet metadata lacks a readable taml.space/taml.tasks/taml.name ({exc})") from None
    raw = table_benchmark_from_file(path, [f"{t}/val" for t in tasks], test_columns={f"{t}/val": f"{t}/test" for t in tasks},
                                    space=space, name=name)
    return TableBenchmark(name, space, tasks, raw.row_actions, {t: raw.metric[f"{t}/val"] for t in tasks},
                          {t: raw.test_metric[f"{t}/val"] for t in tasks}, source=str(path))


PACKAGED_TABLE_DIR = Path(__file__).parent / "tables"
PACKAGED_TABLES = {"taml-text-real"}  # real text children, built by `make bench-table`

# name -> (file under the benchmark dir, loader of that file)
BENCHMARKS: Registry[tuple[str, Callable[[Path], TableBenchmark]]] = Registry("benchmark")
BENCHMARKS.register("transnasbench101-micro", (TNB101_MICRO_FILE, _load_tnb101_micro))
BENCHMARKS.register("nasbench201", (NB201_FILE, _load_nasbench201))
BENCHMARKS.register("taml-text-real", ("taml_text_real.parquet", _load_self_described))


# -- any table file ---------------------------------------------------------------------------


def table_benchmark_from_file(
    path: str | Path,
    metric_columns: list[str] | None = None,
    decision_columns: list[str] | None = None,
    test_columns: dict[str, str] | None = None,
    space: SearchSpace | None = None,
    name: str | None = None,
) -> TableBenchmark:
    """A benchmark from a Parquet or CSV table: decision columns plus one metric column per task.

    metric_columns: required; each names a task and holds its validation metric (higher is better).
    test_columns: optional {metric column: test metric column}.
    decision_columns: default `space.names` when `space` is given, else every column that is
        not a metric or test column.
    space: when given, every decision must be a column and every value one of its choices;
        otherwise a categorical space is inferred: the sorted distinct values of each column.
        CSV cells are matched as text ("3" matches the choice 3); when inferring from CSV a column
        becomes int, bool or float only if every value is written canonically, so "012" stays a
        string.
    """
    path = Path(path)
    if not metric_columns:
        raise ConfigError(f"{path}: metric_columns is required (one metric column per task)")
    metric_columns = list(metric_columns)
    if len(set(metric_columns)) != len(metric_columns):
        raise ConfigError(f"{path}: metric_columns repeat: {metric_columns}")
    test_columns = dict(test_columns or {})
    unknown = sorted(set(test_columns) - set(metric_columns))
    if unknown:
        raise ConfigError(f"{path}: test_columns keys {unknown} are not metric columns {metric_columns}")
    if space is not None and decision_columns is not None and list(decision_columns) != space.names:
        raise ConfigError(f"{path}: decision_columns {list(decision_columns)} differ from the space's {space.names}")

    table = _read_table(path)
    if table.num_rows == 0:
        raise TaskError(f"{path} has no rows")
    non_decision = set(metric_columns) | set(test_columns.values())
    if decision_columns is None:
        decision_columns = space.names if space is not None else [
            c for c in table.column_names if c not in non_decision
        ]
    decision_columns = list(decision_columns)
    if not decision_columns:
        raise ConfigError(f"{path}: no decision columns; columns are {table.column_names}")
    overlap = sorted(set(decision_columns) & non_decision)
    if overlap:
        raise ConfigError(f"{path}: column(s) {overlap} are both decisions and metrics")
    for column in decision_columns:
        _require_column(table, column, path)
    from_text = _is_csv(path)
    if from_text:
        typed = [c for c in decision_columns if not pa.types.is_string(table.schema.field(c).type)]
        if typed:
            table = _read_table(path, string_columns=typed)

    metric = {c: _numeric_column(table, c, path, "metric") for c in metric_columns}
    test = {c: _numeric_column(table, t, path, "test") for c, t in test_columns.items()}

    decisions, columns = [], []
    for j, column in enumerate(decision_columns):
        given = space.decisions[j] if space is not None else None
        decision, indices = _encode_column(table[column], column, given, from_text, path)
        decisions.append(decision)
        columns.append(indices)
    if space is None:
        space = SearchSpace(name or _stem(path), tuple(decisions))
    actions = np.stack(columns, axis=1)
    return TableBenchmark(name or _stem(path), space, metric_columns, actions, metric, test, source=str(path))


_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_CANONICAL_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")  # no "012", no "+1"


def _encode_column(
    column: pa.ChunkedArray, name: str, decision: Decision | None, from_text: bool, path: Path
) -> tuple[Decision, np.ndarray]:
    """Distinct values -> choices (given or inferred); returns the decision and [rows] indices."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise TaskError(f"{path}: decision column {name!r} has type {kind}; expected strings, numbers or booleans")
    if column.null_count:
        raise TaskError(f"{path}: decision column {name!r} is empty in row {_first_null(column)}")
    encoded = column.combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    distinct: list[Any] = encoded.dictionary.to_pylist()

    def first_row(k: int) -> int:
        return int(np.argmax(codes == k))

    for k, value in enumerate(distinct):
        if isinstance(value, float) and not math.isfinite(value):
            raise TaskError(f"{path}: decision column {name!r} has {value} in row {first_row(k)}")

    if decision is not None:
        mapping = []
        for k, value in enumerate(distinct):
            index = _match_text(decision, value) if from_text else _match_value(decision, value)
            if index is None and isinstance(value, str):  # Parquet text spelling a mixed-type choice
                index = _match_text(decision, value)
            if index is None:
                raise SearchSpaceError(
                    f"{path}: column {name!r} row {first_row(k)}: value {value!r} is not one of the "
                    f"choices {list(decision.choices)} of decision {decision.name!r}"
                )
            mapping.append(index)
        return decision, np.asarray(mapping, dtype=np.int64)[codes]

    values = _infer_text_values(distinct) if from_text else distinct
    choices = sorted(values)
    position = {v: i for i, v in enumerate(choices)}  # one type per column: no 1 / 1.0 / True clash
    mapping = np.asarray([position[v] for v in values], dtype=np.int64)
    return Decision(name, tuple(choices)), mapping[codes]


def _match_value(decision: Decision, value: Any) -> int | None:
    try:
        return decision.index(value)
    except SearchSpaceError:
        return None


def _match_text(decision: Decision, text: str) -> int | None:
    """Index of the choice that `text` (a CSV cell) spells; exact strings win over numbers."""
    stripped = text.strip()
    for i, choice in enumerate(decision.choices):
        if isinstance(choice, str) and choice == text:
            return i
    for i, choice in enumerate(decision.choices):
        if isinstance(choice, bool):
            if stripped.lower() == str(choice).lower():
                return i
        elif isinstance(choice, int):
            if _INT_TEXT.fullmatch(stripped) and int(stripped) == choice:
                return i
    for i, choice in enumerate(decision.choices):
        if isinstance(choice, float) and _FLOAT_TEXT.fullmatch(stripped) and float(stripped) == choice:
            return i
    return None


def _infer_text_values(texts: list[str]) -> list[Choice]:
    """Distinct CSV cells -> ints / bools / floats when every cell is written as one, else strings."""
    if all(_CANONICAL_INT.fullmatch(t) for t in texts):
        return [int(t) for t in texts]
    lowered = [t.lower() for t in texts]
    if all(t in ("true", "false") for t in lowered) and len(set(lowered)) == len(lowered):
        return [t == "true" for t in lowered]
    if all(_CANONICAL_FLOAT.fullmatch(t) for t in texts):
        floats = [float(t) for t in texts]
        if len(set(floats)) == len(floats):
            return floats
    return list(texts)


# -- reading ----------------------------------------------------------------------------------


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz", ".csv.bz2"))


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".parquet", ".pq", ".csv.gz", ".csv.bz2", ".csv"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read_table(path: Path, string_columns: Sequence[str] = ()) -> pa.Table:
    from transfer_automl.limits import check_regular_file, limits

    check_regular_file(path, "benchmark table", TaskError, limits().max_task_bytes, "TAML_MAX_TASK_BYTES")
    if not path.is_file():
        raise TaskError(f"benchmark table {path} does not exist")
    lower = path.name.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            return pq.read_table(path)
        if _is_csv(path):
            options = pa_csv.ConvertOptions(column_types={c: pa.string() for c in string_columns})
            return pa_csv.read_csv(path, convert_options=options)
    except (pa.ArrowException, OSError) as exc:
        raise TaskError(f"benchmark table {path} is unreadable: {exc}") from None
    raise TaskError(f"benchmark table {path}: unknown format; expected .parquet, .pq or .csv")


def _require_column(table: pa.Table, column: str, path: Path) -> pa.ChunkedArray:
    if column not in table.column_names:
        raise TaskError(f"{path} lacks column {column!r}; columns: {table.column_names}")
    return table[column]


def _numeric_column(table: pa.Table, column: str, path: Path, role: str) -> np.ndarray:
    data = _require_column(table, column, path)
    kind = data.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise TaskError(f"{path}: {role} column {column!r} has type {kind}; expected numbers")
    values = data.cast(pa.float64()).to_numpy()  # nulls become NaN
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise TaskError(
            f"{path}: {role} column {column!r} is NaN, infinite or empty in {len(bad)} row(s), "
            f"first row {bad[0]}"
        )
    return values


def _first_null(column: pa.ChunkedArray) -> int:
    return int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))

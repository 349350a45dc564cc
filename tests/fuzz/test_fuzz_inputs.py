"""Property: no input gives a traceback, a hang, or a change to files already written.

Each reader of untrusted input (the space loader, the task loader, the table loader, the ledger
reader, the checkpoint reader, the command-line parser) is fed generated input. It must either
succeed or raise a TamlError (the CLI's one line, exit 2); anything else is a bug. Every example
runs under Hypothesis's deadline; readers must leave the files they read as they were.
`make fuzz` runs the same properties with thousands of examples (TAML_FUZZ_PROFILE=fuzz).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from transfer_automl.cli import build_parser, main
from transfer_automl.errors import TamlError
from transfer_automl.search import Ledger
from transfer_automl.search.ledger import SCHEMA
from transfer_automl.space import SearchSpace, load_space
from transfer_automl.storage import LocalStore
from transfer_automl.study import SearchSettings, Study
from transfer_automl.study.settings import check_pipeline_settings, given_settings
from transfer_automl.tasks.benchmarks import table_benchmark_from_file
from transfer_automl.tasks.text import load_text_task
from transfer_automl.tracking import MemoryTracker

pytestmark = pytest.mark.slow

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=4), max_leaves=20)
NAMES = st.sampled_from(["layers", "width", "lr", "", "a b", "x" * 300, 7, None])


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="taml-fuzz-"))


# -- search-space files ------------------------------------------------------------------------

DECISION = st.fixed_dictionaries(
    {"name": NAMES, "choices": st.one_of(st.lists(SCALARS, max_size=5), SCALARS)},
    optional={"description": SCALARS | JSON, "condition": st.fixed_dictionaries(
        {"parent": NAMES, "values": st.lists(SCALARS, max_size=3)}) | JSON, "extra": SCALARS})
SPACE_DOC = st.one_of(JSON, st.fixed_dictionaries({"decisions": st.lists(DECISION, max_size=5)},
                                                  optional={"name": SCALARS}))


@given(doc=SPACE_DOC, as_json=st.booleans(), noise=st.text(max_size=40))
def test_the_space_loader_returns_a_space_or_a_clean_error(doc, as_json, noise):
    folder = _scratch()
    try:
        path = folder / ("space.json" if as_json else "space.yaml")
        text = json.dumps(doc) if as_json else yaml.safe_dump(doc)
        for body in (text, text + noise, noise):
            path.write_text(body)
            before = _digest(folder)
            try:
                assert isinstance(load_space(path), SearchSpace)
            except TamlError:
                pass
            assert _digest(folder) == before
    finally:
        shutil.rmtree(folder)


# -- task files --------------------------------------------------------------------------------

CELL = st.one_of(st.none(), st.text(max_size=30), st.integers(-5, 5), st.sampled_from(["train", "validation",
                                                                                       "test", "dev"]))
COLUMN_NAMES = st.sampled_from(["text", "label", "split", "extra"])


@st.composite
def task_tables(draw) -> pa.Table | bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))  # not Parquet at all
    rows = draw(st.integers(0, 30))
    columns = draw(st.lists(COLUMN_NAMES, min_size=1, max_size=4, unique=True))
    data = {}
    for name in columns:
        kind = draw(st.sampled_from(["text", "mixed", "ints", "binary"]))
        if kind == "text":
            data[name] = pa.array(draw(st.lists(st.text(max_size=20) | st.sampled_from(["train", "test", "validation"]),
                                                min_size=rows, max_size=rows)), pa.string())
        elif kind == "ints":
            data[name] = pa.array(draw(st.lists(st.integers(0, 3), min_size=rows, max_size=rows)), pa.int64())
        elif kind == "binary":
            data[name] = pa.array(draw(st.lists(st.binary(max_size=8), min_size=rows, max_size=rows)), pa.binary())
        else:
            data[name] = pa.array([None if v is None else str(v)
                                   for v in draw(st.lists(CELL, min_size=rows, max_size=rows))], pa.string())
    return pa.table(data)


@given(table=task_tables())
def test_the_task_loader_returns_a_task_or_a_clean_error(table):
    folder = _scratch()
    try:
        path = folder / "task.parquet"
        if isinstance(table, pa.Table):
            pq.write_table(table, path)
        else:
            path.write_bytes(table)
        before = _digest(folder)
        try:
            task = load_text_task(path)
            assert all(len(task.splits[s]) > 0 for s in ("train", "validation", "test"))
        except TamlError:
            pass
        assert _digest(folder) == before
    finally:
        shutil.rmtree(folder)


# -- benchmark tables (--table) ----------------------------------------------------------------

@given(rows=st.lists(st.fixed_dictionaries({"depth": CELL, "act": CELL, "t1": SCALARS, "t2": SCALARS}), max_size=12),
       as_csv=st.booleans(), metrics=st.lists(st.sampled_from(["t1", "t2", "depth", "nope", ""]), max_size=3))
def test_the_table_loader_returns_a_benchmark_or_a_clean_error(rows, as_csv, metrics):
    folder = _scratch()
    try:
        path = folder / ("table.csv" if as_csv else "table.parquet")
        if as_csv:
            lines = ["depth,act,t1,t2", *(",".join("" if r[k] is None else str(r[k]).replace(",", ";").replace("\n", " ")
                                                   for k in ("depth", "act", "t1", "t2")) for r in rows)]
            path.write_text("\n".join(lines) + "\n")
        else:
            try:
                table = pa.Table.from_pylist([{k: (None if v is None else str(v)) for k, v in r.items()} for r in rows])
            except pa.ArrowException:
                return
            pq.write_table(table, path)
        before = _digest(folder)
        try:
            table_benchmark_from_file(path, metric_columns=metrics or None)
        except TamlError:
            pass
        assert _digest(folder) == before
    finally:
        shutil.rmtree(folder)


# -- ledgers and checkpoints of a real search --------------------------------------------------

@pytest.fixture(scope="module")
def toy_search(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-search")
    rows = [{"depth": d, "act": a, "t1": d + (a == "relu"), "t2": -d + 0.5 * (a == "tanh")}
            for d in (1, 2, 3) for a in ("relu", "tanh")]
    pq.write_table(pa.Table.from_pylist(rows), folder / "toy.parquet")
    out = folder / "search"
    study = Study.open(SearchSettings(tasks=(), trials=6, batch_size=2, out=str(out), table=str(folder / "toy.parquet"),
                                      method="rs", metric_columns=("t1", "t2"), progress=False, search_id="fuzz"),
                       tracker=MemoryTracker())
    for step in study.pending_rounds():
        study.tell_round(step, [study.run_trial(t) for t in study.ask_round(step)])
    study.finish()
    return out


ROW_CHANGES = st.dictionaries(st.sampled_from(SCHEMA.names), SCALARS, max_size=3)


@given(file_name=st.sampled_from(["round-000001.parquet", "round-000099.parquet", "round-1.parquet", "x.parquet",
                                  "notes.txt", "round-000000.parquet"]),
       kind=st.sampled_from(["bytes", "rows", "duplicate"]), junk=st.binary(max_size=64), changes=ROW_CHANGES)
def test_the_ledger_reader_refuses_cleanly_and_repair_always_restores_a_readable_ledger(toy_search, file_name, kind,
                                                                                         junk, changes):
    folder = _scratch()
    try:
        out = folder / "search"
        shutil.copytree(toy_search, out)
        ledger = Ledger(out / "ledger")
        rows = pq.read_table(out / "ledger" / "round-000000.parquet").to_pylist()
        target = out / "ledger" / file_name
        if kind == "bytes":
            target.write_bytes(junk)
        else:
            changed = [{**rows[0], **changes}] if kind == "rows" else [rows[0], rows[0]]
            try:
                table = pa.Table.from_pylist(changed, schema=SCHEMA)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                table = pa.Table.from_pylist([{k: str(v) for k, v in r.items()} for r in changed])
            pq.write_table(table, target)
        before = _digest(out)
        for read in (lambda: ledger.check("fuzz"), ledger.read):
            try:
                read()
            except TamlError:
                pass
        assert _digest(out) == before  # reading never writes
        assert main(["runs", "repair", str(out), "--json"]) == 0
        ledger.check("fuzz")  # after a repair the ledger is this search's, each trial once
        kept = ledger.read()
        assert set(kept.column("search_id").to_pylist()) <= {"fuzz"}
        for name, digest in before.items():  # whatever left the ledger is in quarantine, byte for byte
            if not (out / name).is_file():
                assert digest in _digest(out / "quarantine").values(), name
    finally:
        shutil.rmtree(folder)


FIELD_VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=5), SCALARS,
                                                                                 max_size=3))


@given(field=st.sampled_from(["step", "tasks", "search_id", "name", "space_fingerprint", "generator_state",
                              "search_settings", "format_version", "state", "space"]),
       value=FIELD_VALUES, flips=st.lists(st.integers(0, 10**6), max_size=2))
def test_the_checkpoint_reader_resumes_or_refuses_cleanly(toy_search, field, value, flips):
    folder = _scratch()
    try:
        out = folder / "search"
        shutil.copytree(toy_search, out)
        body = torch.load(io.BytesIO(LocalStore(out).get_with_checksum("checkpoint.pt")), weights_only=True)
        if field in body or field in ("state", "space"):
            body[field] = value
        buffer = io.BytesIO()
        torch.save(body, buffer)
        LocalStore(out).put_with_checksum("checkpoint.pt", buffer.getvalue())
        if flips:  # and sometimes a damaged byte: the checksum must catch it
            raw = bytearray((out / "checkpoint.pt").read_bytes())
            for flip in flips:
                raw[flip % len(raw)] ^= 0x10
            (out / "checkpoint.pt").write_bytes(bytes(raw))
        before = _digest(out)
        try:
            study = Study.open({"init_from": "resume", "out": str(out), "trials": 8}, tracker=MemoryTracker())
            for step in study.pending_rounds():
                study.tell_round(step, [study.run_trial(t) for t in study.ask_round(step)])
        except TamlError:
            assert _digest(out) == before  # a refused resume changes nothing
    finally:
        shutil.rmtree(folder)


# -- the command line --------------------------------------------------------------------------

SEARCH_FLAGS = sorted(a.option_strings[0] for a in build_parser()._subparsers._group_actions[0].choices["search"]._actions
                      if a.option_strings and a.option_strings[0] not in ("-h", "--help"))
VALUES = st.one_of(st.sampled_from(["nan", "inf", "-1", "0", "1e300", "100000000000000000000000", "rs", "pqt", "",
                                    "sms_spam,sms_spam", "taml-text", "a=b", "a", "x/y", "resume", "transfer"]),
                   st.text(max_size=10), st.integers(-10**25, 10**25).map(str))


@given(argv=st.lists(st.tuples(st.sampled_from(SEARCH_FLAGS), VALUES), max_size=6))
def test_search_flags_parse_and_validate_or_refuse_cleanly(argv):
    args = ["search"] + [part for flag, value in argv for part in (flag, value)]
    args = [a for a in args if a not in ("--help",)]
    try:
        namespace = build_parser().parse_args(args)
    except SystemExit as exit_info:
        assert exit_info.code == 2
        return
    given_values = given_settings(namespace)
    try:
        SearchSettings.from_mapping({"trials": 1, "out": "unused", **given_values})
    except TamlError:
        pass


@given(mapping=st.dictionaries(st.sampled_from(sorted(SearchSettings.__dataclass_fields__) + ["bogus"]), JSON,
                               max_size=5))
def test_pipeline_settings_mappings_are_checked_cleanly(mapping):
    try:
        check_pipeline_settings(mapping)
    except TamlError:
        pass


COMMANDS = st.sampled_from([["report"], ["runs", "show"], ["runs", "list"], ["runs", "repair"], ["spaces"],
                            ["tasks", "--data-dir"], ["transfer", "--target", "x", "--from"]])


@given(command=COMMANDS, value=st.sampled_from(["", "nope", "/dev/null", "/", "s3://", "x" * 300, "-"]))
def test_commands_on_hostile_paths_exit_cleanly(command, value, capsys):
    folder = _scratch()
    try:
        extra = ["--out", str(folder / "o")] if command[0] in ("report", "transfer") else []
        try:
            code = main([*command, value, *extra])
        except SystemExit as exit_info:
            code = exit_info.code
        err = capsys.readouterr().err
        assert code in (0, 2), err
        assert "Traceback" not in err and "internal error" not in err, err
    finally:
        shutil.rmtree(folder)

"""The task history (transfer_automl.history, study/history.py): every finished search is
recorded (locally and on S3), `--transfer auto` picks the compatible earlier searches and leaves
the others, an empty history gives a scratch search, the shipped starter history never hands a
benchmark task its own rows, damaged entries are skipped, a --transfer auto search resumes, and a
bad --history is one line naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401
from transfer_automl.cli import main
from transfer_automl.history import HistoryStore, TaskFingerprint, select_sources, starter_history
from transfer_automl.history.store import MANIFEST
from transfer_automl.steps.search import run_search
from transfer_automl.storage import get_store
from transfer_automl.tasks.benchmarks import TNB101_MICRO_TASKS, load_benchmark
from transfer_automl.tracking import Tracker
from transfer_automl.tracking.memory import MemoryTracker

TNB = "transnasbench101-micro"


def _search(out, history, **settings):
    """A finished search (no MLflow): taml search's loop."""
    return run_search({"benchmark": TNB, "out": str(out), "history": str(history), "progress": False,
                       "trials": 10, "batch_size": 5, **settings}, tracker=Tracker())


def _settings(out: Path) -> dict:
    return json.loads((out / "settings.json").read_text())


def _configs(out: Path) -> list[str]:
    rows = pq.read_table(out / "ledger").to_pylist()
    return [r["config"] for r in sorted(rows, key=lambda r: r["trial_id"])]


def test_a_finished_search_lands_in_the_history(tmp_path):
    result = _search(tmp_path / "a", tmp_path / "h", tasks=("class_scene", "room_layout"), method="reinforce")
    [entry] = HistoryStore(tmp_path / "h").entries()
    assert result.history_entry == entry.where
    assert entry.search_id == result.search_id
    assert entry.space_fingerprint == load_benchmark(TNB).space.fingerprint()
    assert [(t.name, t.identity) for t in entry.tasks] == [
        ("class_scene", f"benchmark:{TNB}/class_scene"), ("room_layout", f"benchmark:{TNB}/room_layout")]
    summary = entry.summary().to_pylist()
    assert sorted(r["config"] for r in summary) == sorted(_configs(tmp_path / "a"))  # every trial, as the ledger
    assert {r["task"] for r in summary} == {"class_scene", "room_layout"}
    assert entry.checkpoint_bytes() == (tmp_path / "a" / "checkpoint.pt").read_bytes()  # a controller search's

    # Resumed and finished again: one entry, its new version; the old version's files are gone.
    run_search({"out": str(tmp_path / "a"), "init_from": "resume", "trials": 15, "progress": False},
               tracker=Tracker())
    [again] = HistoryStore(tmp_path / "h").entries()
    assert again.summary().num_rows == 15
    assert len({p.parent for p in (tmp_path / "h").rglob("summary.parquet")}) == 1


def test_history_none_records_nothing(tmp_path):
    result = _search(tmp_path / "a", "none", tasks=("jigsaw",), method="rs")
    assert result.history_entry == ""
    assert not (tmp_path / "none").exists()


def test_a_finished_search_on_s3_lands_in_an_s3_history(s3_bucket):
    history = f"s3://{s3_bucket}/history"
    result = _search(f"s3://{s3_bucket}/runs/a", history, tasks=("jigsaw",), method="rs")
    [entry] = HistoryStore(history).entries()
    assert entry.where == f"{history}/entries/{result.search_id}"
    assert entry.summary().num_rows == 10 and entry.checkpoint_bytes() is None  # rs has no controller
    # A --transfer auto search on S3 reads it (its sources file is an S3 object) and records itself.
    _search(f"s3://{s3_bucket}/runs/b", history, tasks=("class_scene",), transfer="auto", trials=4, batch_size=2,
            search_id="auto-on-s3")
    assert {e.search_id for e in HistoryStore(history).entries()} == {result.search_id, "auto-on-s3"}
    stored = json.loads(get_store(f"s3://{s3_bucket}/runs/b").get_bytes("settings.json"))
    assert stored["method"] == "rank-ensemble"
    assert stored["method_options"]["sources"] == f"s3://{s3_bucket}/runs/b/history-sources.parquet"
    assert result.search_id in {u["search_id"] for u in stored["_history"]["entries"]}


def test_transfer_auto_picks_the_compatible_search_and_not_the_incompatible_one(tmp_path, capsys):
    h = tmp_path / "h"
    _search(tmp_path / "tnb", h, tasks=("class_scene",), method="rs", search_id="tnb-earlier")
    run_search({"benchmark": "nasbench201", "out": str(tmp_path / "nb"), "history": str(h), "progress": False,
                "trials": 5, "method": "rs", "search_id": "nb201-earlier"}, tracker=Tracker())
    assert {e.search_id for e in HistoryStore(h).entries()} == {"tnb-earlier", "nb201-earlier"}
    capsys.readouterr()
    tracker = MemoryTracker()
    run_search({"benchmark": TNB, "out": str(tmp_path / "new"), "history": str(h), "progress": False, "trials": 10,
                "tasks": ("jigsaw",), "transfer": "auto"}, tracker=tracker)
    assert "rank-ensemble over" in capsys.readouterr().err
    stored = _settings(tmp_path / "new")
    assert stored["method"] == "rank-ensemble" and stored["transfer"] == "auto"
    used = {u["search_id"]: u["tasks"] for u in stored["_history"]["entries"]}
    # The user's class_scene search, and the starter's other TransNAS tasks; never nasbench201's.
    assert used["tnb-earlier"] == {"class_scene": 10}
    assert set(used[f"starter-{TNB}"]) == set(TNB101_MICRO_TASKS) - {"jigsaw"}
    assert "nb201-earlier" not in used
    assert tracker.params["history.sources"] == {u["search_id"]: u["tasks"] for u in stored["_history"]["entries"]}
    sources = pq.read_table(tmp_path / "new" / "history-sources.parquet").to_pylist()
    assert "jigsaw" not in {r["task"] for r in sources}
    assert sum(r["task"] == "class_scene" for r in sources) == 10 + 200  # one task: both searches' rows


def test_with_no_relevant_history_it_is_a_scratch_search(tmp_path, capsys):
    # The starter history has no nasbench201 entry, and the user's history is empty.
    run_search({"benchmark": "nasbench201", "out": str(tmp_path / "a"), "history": str(tmp_path / "h"),
                "progress": False, "trials": 5, "transfer": "auto", "method": "tpe"}, tracker=Tracker())
    err = capsys.readouterr().err
    assert "this is a scratch tpe search" in err and err.count("--transfer auto") == 1
    stored = _settings(tmp_path / "a")
    assert stored["method"] == "tpe" and stored["_history"]["rows"] == 0
    assert not (tmp_path / "a" / "history-sources.parquet").exists()


def test_the_starter_history_excludes_the_target_task_but_the_users_own_history_does_not():
    space = load_benchmark(TNB).space.fingerprint()
    target = TaskFingerprint("jigsaw", f"benchmark:{TNB}/jigsaw", "benchmark")
    selection = select_sources([starter_history()], space, [target])
    labels = selection.rows["task"]
    assert "jigsaw" not in labels
    assert {t: labels.count(t) for t in set(labels)} == {t: 200 for t in TNB101_MICRO_TASKS if t != "jigsaw"}
    assert any("jigsaw (the target task itself)" in e for e in selection.excluded)
    # The same entry read as a user's history: an earlier search of the same task is a source.
    mine = HistoryStore(starter_history().uri)
    assert select_sources([mine], space, [target]).rows["task"].count("jigsaw") == 200


def test_the_shipped_starter_history_holds_both_tables_and_is_small():
    entries = {e.search_id: e for e in starter_history().entries()}
    assert set(entries) == {f"starter-{TNB}", "starter-taml-text-real"}
    assert len(entries["starter-taml-text-real"].tasks) == 14 and len(entries[f"starter-{TNB}"].tasks) == 7
    size = sum(p.stat().st_size for p in Path(starter_history().uri).rglob("*") if p.is_file())
    assert size < 200_000
    with pytest.raises(Exception, match="read-only"):
        starter_history().write("x", "s", "f", [], entries[f"starter-{TNB}"].summary())


def test_a_half_written_or_corrupt_entry_is_skipped_with_a_warning(tmp_path, capsys):
    h = tmp_path / "h"
    for name in ("good", "garbled", "tampered"):
        _search(tmp_path / name, h, tasks=("class_scene",), method="rs", search_id=name)
    entries = h / "entries"
    (entries / "garbled" / MANIFEST).write_text("{not json")
    tampered = next((entries / "tampered").rglob("summary.parquet"))
    tampered.write_bytes(tampered.read_bytes()[:-10])
    # A writer that crashed before its manifest: files no manifest names.
    half = entries / "crashed" / "v-1"
    half.mkdir(parents=True)
    (half / "summary.parquet").write_bytes(next((entries / "good").rglob("summary.parquet")).read_bytes())
    capsys.readouterr()
    listed = {e.search_id for e in HistoryStore(h).entries()}
    assert listed == {"good", "tampered"}  # tampered's manifest reads; its summary fails its checksum
    assert f"{entries / 'garbled'} is skipped" in capsys.readouterr().err
    space = load_benchmark(TNB).space.fingerprint()
    selection = select_sources([HistoryStore(h)], space, [TaskFingerprint("jigsaw", "x", "benchmark")])
    assert [u["search_id"] for u in selection.used] == ["good"]
    assert f"{entries / 'tampered'} is skipped" in capsys.readouterr().err


def test_a_transfer_auto_search_resumes_exactly_without_its_sources(tmp_path):
    h = tmp_path / "h"
    _search(tmp_path / "earlier", h, tasks=("class_scene", "normal"), method="rs", trials=10)
    shutil.copytree(h, tmp_path / "h2")  # both see the same history (the first would be in the second's)
    opts = {"tasks": ("jigsaw",), "transfer": "auto", "seed": 3, "batch_size": 2}
    _search(tmp_path / "whole", h, **{**opts, "trials": 6})
    _search(tmp_path / "split", tmp_path / "h2", **{**opts, "trials": 2})
    (tmp_path / "split" / "history-sources.parquet").unlink()  # the checkpoint holds the sources as read
    (tmp_path / "earlier").rename(tmp_path / "moved")
    run_search({"out": str(tmp_path / "split"), "init_from": "resume", "trials": 6, "progress": False},
               tracker=Tracker())
    assert _settings(tmp_path / "split")["method"] == "rank-ensemble"
    whole = _configs(tmp_path / "whole")
    assert len(set(whole)) == 6 and _configs(tmp_path / "split") == whole


@pytest.mark.parametrize("value", ["ftp://host/history", "FILE"])
def test_a_bad_history_is_one_line_naming_it(tmp_path, capsys, value):
    (tmp_path / "FILE").write_text("not a directory")
    value = str(tmp_path / "FILE") if value == "FILE" else value
    code = main(["search", "--benchmark", TNB, "--tasks", "jigsaw", "--trials", "5", "--out", str(tmp_path / "a"),
                 "--history", value, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "history" in err and value in err
    assert not (tmp_path / "a").exists()  # refused before anything was written

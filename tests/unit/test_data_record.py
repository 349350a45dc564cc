"""A search records what it read (settings.json `_data`, the MLflow run's params): the data
directory, each task file's content hash, the bundled-sample fallback. `taml report` and `taml
runs show` use that record from any working directory and refuse, naming the path, when the data
moved or changed; a search written before the record existed still loads, with a note."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transfer_automl.cli import main
from transfer_automl.report import ReportError, build_report, load_search
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchSettings
from transfer_automl.tasks.text import load_text_task
from transfer_automl.tracking import MemoryTracker

pytestmark = pytest.mark.slow  # whole (tiny) text searches

_DECISIONS = [("input_module", ["random-hashed-64"]), ("fine_tune", [False]), ("hidden_layers", [1]),
              ("hidden_size", [8]), ("activation", ["relu"]), ("normalization", ["none"]), ("dropout", [0.0]),
              ("deep_lr", [0.1]), ("deep_reg", [0.0]), ("wide_lr", [0.1]), ("wide_reg", [0.0]),
              ("training_samples", [1000])]


def _task_file(path: Path, majority_share: float, rows: int = 200) -> None:
    """A task whose majority class covers `majority_share` of the rows (unlike the bundled samples)."""
    n_major = round(rows * majority_share)
    texts = [f"ham message number {i} about lunch" if i < n_major else f"win cash prize now {i}" for i in range(rows)]
    labels = ["ham" if i < n_major else "spam" for i in range(rows)]
    order = sorted(range(rows), key=lambda i: (i * 7919) % rows)  # interleaved, deterministic
    pq.write_table(pa.table({"text": [texts[i] for i in order], "label": [labels[i] for i in order],
                             "split": [None] * rows}, schema=pa.schema([("text", pa.string()), ("label", pa.string()),
                                                                       ("split", pa.string())])), path)


@pytest.fixture()
def searched(tmp_path, monkeypatch, feature_cache_dir):
    """A 2-trial search on `sms_spam` from tmp/work/data (given as the RELATIVE --data-dir `data`),
    whose majority class differs from the bundled sample's; the search's own references."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    _task_file(work / "data" / "sms_spam.parquet", 0.6)
    space = work / "space.json"
    space.write_text(json.dumps({"name": "tiny", "decisions": [{"name": n, "choices": c} for n, c in _DECISIONS]}))
    monkeypatch.chdir(work)
    tracker = MemoryTracker()
    result = run_search(SearchSettings(tasks=("sms_spam",), trials=2, out="run", space="space.json", data_dir="data",
                                       cache_dir=str(feature_cache_dir), budget_scale=0.01, progress=False,
                                       search_id="rec"), tracker=tracker)
    own = {s.task: (s.reference_val, s.reference_test) for s in result.per_task}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return work, elsewhere, own, tracker


def test_settings_and_the_run_record_the_data_read(searched):
    work, _, _, tracker = searched
    stored = json.loads((work / "run" / "settings.json").read_text())
    record = stored["_data"]
    file = work / "data" / "sms_spam.parquet"
    assert record["data_dir"] == str((work / "data").resolve()) and Path(record["data_dir"]).is_absolute()
    assert record["files"]["sms_spam"] == {"path": str(file.resolve()),
                                           "content_hash": hashlib.sha256(file.read_bytes()).hexdigest()[:16]}
    assert record["bundled_samples"] is False
    assert tracker.params["data.dir"] == record["data_dir"]
    assert tracker.params["data.content_hash"] == {"sms_spam": record["files"]["sms_spam"]["content_hash"]}
    assert tracker.params["data.bundled_samples"] is False
    # The settings a resume reads ignore the record (it is not a setting).
    assert SearchSettings.from_mapping({k: v for k, v in stored.items() if not k.startswith("_")}).data_dir == "data"


def test_report_from_another_directory_shows_the_searchs_own_references(searched, monkeypatch, capsys):
    work, elsewhere, own, _ = searched
    monkeypatch.chdir(elsewhere)  # the relative data dir "data" means nothing here
    report = build_report(str(work / "run"))
    summary = report.search.summaries()[0]
    assert (summary.reference_val, summary.reference_test) == own["sms_spam"]
    assert report.search.references["sms_spam"].source == str((work / "data").resolve())
    # not the bundled 1,000-row sample's majority class
    sample = load_text_task(Path(__file__).resolve().parents[2] / "src/transfer_automl/tasks/samples/sms_spam.parquet")
    assert summary.reference_test != sample.majority_accuracy("test")
    capsys.readouterr()
    assert main(["runs", "show", str(work / "run"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["summary"][0]["reference_test"] == own["sms_spam"][1] and shown["data_note"] is None


def test_moved_data_is_refused_naming_the_path_and_found_again_with_data_dir(searched, monkeypatch, capsys):
    work, elsewhere, own, _ = searched
    monkeypatch.chdir(elsewhere)
    shutil.move(work / "data", work / "moved")
    with pytest.raises(ReportError, match="moved or deleted") as info:
        load_search(str(work / "run"))
    assert str(work / "data" / "sms_spam.parquet") in str(info.value)
    capsys.readouterr()
    assert main(["runs", "show", str(work / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(work / "data" / "sms_spam.parquet") in err[0]
    assert main(["report", str(work / "run"), "--out", str(elsewhere / "r.html")]) == 2
    assert not (elsewhere / "r.html").exists()
    # Told where the files are now, the hashes still match: the search's own references.
    found = load_search(str(work / "run"), data_dir=str(work / "moved"))
    assert (found.references["sms_spam"].val, found.references["sms_spam"].test) == own["sms_spam"]


def test_changed_data_is_refused_naming_the_path(searched, monkeypatch):
    work, elsewhere, _, _ = searched
    monkeypatch.chdir(elsewhere)
    _task_file(work / "data" / "sms_spam.parquet", 0.9)  # same name, other content
    with pytest.raises(ReportError, match="the data changed") as info:
        load_search(str(work / "run"))
    assert str(work / "data" / "sms_spam.parquet") in str(info.value)
    with pytest.raises(ReportError, match="the data changed"):  # the same file given again
        load_search(str(work / "run"), data_dir=str(work / "data"))


def test_a_search_without_the_record_loads_as_before_with_a_note(searched, monkeypatch, capsys):
    work, _, own, _ = searched
    settings = work / "run" / "settings.json"
    body = json.loads(settings.read_text())
    del body["_data"]  # as written by an earlier taml
    settings.write_text(json.dumps(body))
    data = load_search(str(work / "run"))  # cwd is work: its data dir "data" still resolves
    assert (data.references["sms_spam"].val, data.references["sms_spam"].test) == own["sms_spam"]
    assert "does not record which task files" in data.data_note
    assert "does not record which task files" in build_report(str(work / "run")).html
    capsys.readouterr()
    assert main(["runs", "show", str(work / "run")]) == 0
    assert "note: " in capsys.readouterr().out


def test_the_bundled_sample_fallback_is_recorded(tmp_path, monkeypatch, feature_cache_dir):
    monkeypatch.chdir(tmp_path)  # no ../shared/data/text here, no TAML_DATA_DIR: the bundled samples
    assert not Path("../shared/data/text").is_dir() and "TAML_DATA_DIR" not in os.environ
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"name": "tiny", "decisions": [{"name": n, "choices": c} for n, c in _DECISIONS]}))
    run_search(SearchSettings(tasks=("mpqa",), trials=1, out="run", space=str(space), cache_dir=str(feature_cache_dir),
                              budget_scale=0.01, progress=False, search_id="bundled"), tracker=MemoryTracker())
    record = json.loads((tmp_path / "run" / "settings.json").read_text())["_data"]
    assert record["bundled_samples"] is True and record["data_dir"].endswith("transfer_automl/tasks/samples")
    assert load_search(str(tmp_path / "run")).references["mpqa"].test > 0


def test_runs_register_from_another_directory_reads_the_recorded_data(searched, monkeypatch, tmp_path):
    from transfer_automl.study.champions import register_champions

    work, elsewhere, _, _ = searched
    monkeypatch.chdir(elsewhere)  # the search's data_dir "data" is relative to work, not here
    report = register_champions(str(work / "run"), f"sqlite:///{tmp_path}/registry.db")
    assert [r.candidate.task for r in report.registered] == ["sms_spam"], report

"""Limits on untrusted input (transfer_automl.limits): each one refuses, or for long texts
truncates with a warning, quickly and in one line, and each is a setting."""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401
from transfer_automl.cli import main
from transfer_automl.errors import ConfigError, SearchSpaceError, TaskError
from transfer_automl.limits import InputLimits
from transfer_automl.space import load_space
from transfer_automl.tasks.text import load_text_task

BOMB_LEVELS = "\n".join(f"      - &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True))
BOMB = ("decisions:\n  - name: layers\n    choices: [1, 2]\n    description:\n"
        "      - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + BOMB_LEVELS + "\n")


def test_a_yaml_alias_bomb_is_refused_in_well_under_a_second_of_expansion(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 1000
    start = time.perf_counter()
    with pytest.raises(SearchSpaceError, match="aliases expand to more than 1,000,000 values"):
        load_space(path)
    assert time.perf_counter() - start < 5


def test_many_aliases_and_deep_nesting_are_refused_naming_their_setting(tmp_path, monkeypatch):
    many = tmp_path / "many.yaml"
    many.write_text("decisions:\n  - {name: a, choices: [1, 2], description: [&x d, " + ", ".join(["*x"] * 150) + "]}\n")
    with pytest.raises(SearchSpaceError, match="more than 100 aliases .TAML_MAX_YAML_ALIASES"):
        load_space(many)
    monkeypatch.setenv("TAML_MAX_YAML_ALIASES", "200")
    with pytest.raises(SearchSpaceError, match="description"):  # past the limit, the space's own checks
        load_space(many)
    deep_yaml, deep_json = tmp_path / "deep.yaml", tmp_path / "deep.json"
    deep_yaml.write_text("decisions: " + "[" * 40 + "]" * 40 + "\n")
    deep_json.write_text('{"decisions": ' + "[" * 40 + "]" * 40 + "}")
    for path in (deep_yaml, deep_json):
        with pytest.raises(SearchSpaceError, match="nested deeper than 32 levels .TAML_MAX_NESTING"):
            load_space(path)
    very_deep = tmp_path / "very_deep.json"
    very_deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SearchSpaceError, match="nested too deeply"):
        load_space(very_deep)


def test_a_space_file_over_the_size_limit_or_not_a_file_is_refused(tmp_path, monkeypatch):
    big = tmp_path / "big.yaml"
    big.write_text("decisions:\n  - {name: a, choices: [1, 2]}\n" + "# padding\n" * 200)
    monkeypatch.setenv("TAML_MAX_SPACE_BYTES", "1000")
    with pytest.raises(SearchSpaceError, match="over the limit of 1,000 .TAML_MAX_SPACE_BYTES"):
        load_space(big)
    fifo = tmp_path / "space.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SearchSpaceError, match="is not a regular file"):
        load_space(fifo)  # would block forever if opened


def _task(path, texts):
    n = len(texts)
    pq.write_table(pa.table({"text": texts, "label": ["a", "b"] * (n // 2), "split": [None] * n}), path)
    return path


def test_a_huge_text_is_truncated_with_a_warning_and_a_distinct_cache_key(tmp_path, monkeypatch, capsys):
    texts = [f"text {i}" for i in range(19)] + ["x" * 300_000]
    path = _task(tmp_path / "huge.parquet", texts)
    start = time.perf_counter()
    task = load_text_task(path)
    assert time.perf_counter() - start < 5
    assert task.truncated_texts == 1 and max(len(t) for t in task.texts) == 100_000
    assert "1 text(s)" in capsys.readouterr().err
    monkeypatch.setenv("TAML_MAX_TEXT_CHARS", "1000")
    shorter = load_text_task(path)
    assert max(len(t) for t in shorter.texts) == 1000 and shorter.content_hash != task.content_hash
    plain = load_text_task(_task(tmp_path / "plain.parquet", [f"text {i}" for i in range(20)]))
    assert plain.truncated_texts == 0


def test_task_files_over_the_row_limit_or_not_files_are_refused(tmp_path, monkeypatch, capsys, samples_dir):
    path = _task(tmp_path / "rows.parquet", [f"text {i}" for i in range(40)])
    monkeypatch.setenv("TAML_MAX_TASK_ROWS", "30")
    with pytest.raises(TaskError, match="40 rows, over the limit of 30 .TAML_MAX_TASK_ROWS"):
        load_text_task(path)
    fifo = tmp_path / "fifo.parquet"
    os.mkfifo(fifo)
    assert main(["search", "--tasks", str(fifo), "--trials", "2", "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    assert "is not a regular file" in capsys.readouterr().err


def test_a_limit_setting_must_be_a_positive_whole_number(monkeypatch):
    assert InputLimits.from_env() == InputLimits()
    monkeypatch.setenv("TAML_MAX_TEXT_CHARS", "lots")
    with pytest.raises(ConfigError, match="TAML_MAX_TEXT_CHARS='lots': expected a whole number"):
        InputLimits.from_env()
    monkeypatch.setenv("TAML_MAX_TEXT_CHARS", "0")
    with pytest.raises(ConfigError, match="at least 1"):
        InputLimits.from_env()


def test_a_task_on_s3_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch, s3_bucket):
    import boto3

    path = _task(tmp_path / "t.parquet", [f"text {i}" for i in range(40)])
    boto3.client("s3").upload_file(str(path), s3_bucket, "data/t.parquet")
    size = path.stat().st_size
    monkeypatch.setenv("TAML_MAX_TASK_BYTES", str(size - 1))
    with pytest.raises(TaskError, match=f"is {size:,} bytes, over the limit of {size - 1:,} .TAML_MAX_TASK_BYTES"):
        load_text_task(f"s3://{s3_bucket}/data/t.parquet")
    monkeypatch.setenv("TAML_MAX_TASK_BYTES", str(size))
    assert len(load_text_task(f"s3://{s3_bucket}/data/t.parquet").texts) == 40


def test_a_search_records_how_many_texts_it_truncated(tmp_path, monkeypatch, feature_cache_dir, tiny_text_space):
    import json

    from transfer_automl.steps.search import run_search
    from transfer_automl.tracking import MemoryTracker

    monkeypatch.setenv("TAML_MAX_TEXT_CHARS", "50")
    texts = [f"message number {i} " + ("long " * 20 if i % 5 == 0 else "") for i in range(40)]
    path = _task(tmp_path / "cut.parquet", texts)
    space = tiny_text_space
    tracker = MemoryTracker()
    run_search({"tasks": (str(path),), "trials": 1, "out": str(tmp_path / "s"), "space": str(space),
                "cache_dir": str(feature_cache_dir), "budget_scale": 0.01, "method": "rs", "progress": False,
                "search_id": "cut"}, tracker=tracker)
    recorded = json.loads((tmp_path / "s" / "settings.json").read_text())["_data"]["files"]["cut"]
    assert recorded["truncated_texts"] == 8
    assert tracker.params["data.truncated_texts"] == {"cut": 8}

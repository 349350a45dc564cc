from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from transfer_automl.cli import main

TAML = Path(sys.executable).parent / "taml"


def _search(tmp_path, *extra, tasks="sms_spam", data_dir=None):
    args = ["search", "--tasks", tasks, "--trials", "2", "--out", str(tmp_path / "run"), "--no-progress", *extra]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    return main(args)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_unknown_task(tmp_path, capsys, samples_dir):
    assert _search(tmp_path, tasks="sms_spam,no_such_task", data_dir=samples_dir) == 2
    line = _one_error_line(capsys)
    assert "no_such_task" in line and "sms_spam" in line
    assert not (tmp_path / "run").exists()  # nothing written for a rejected command


def test_malformed_space_file(tmp_path, capsys, samples_dir):
    bad = tmp_path / "space.yaml"
    bad.write_text("decisions:\n  - name: layers\n    choices: []\n")
    assert _search(tmp_path, "--space", str(bad), data_dir=samples_dir) == 2
    line = _one_error_line(capsys)
    assert str(bad) in line and "'layers'" in line and "empty" in line


def test_unreadable_parquet(tmp_path, capsys):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    assert _search(tmp_path, tasks=str(broken)) == 2
    line = _one_error_line(capsys)
    assert str(broken) in line and "Parquet" in line


def test_resume_without_checkpoint(tmp_path, capsys, samples_dir):
    assert _search(tmp_path, "--resume", data_dir=samples_dir) == 2
    assert "checkpoint" in _one_error_line(capsys)


def test_existing_search_is_not_overwritten(tmp_path, capsys, samples_dir):
    ledger = tmp_path / "run" / "ledger"
    ledger.mkdir(parents=True)
    (ledger / "round-000000.parquet").write_bytes(b"keep me")
    assert _search(tmp_path, data_dir=samples_dir) == 2
    assert "already holds a search" in _one_error_line(capsys)
    assert (ledger / "round-000000.parquet").read_bytes() == b"keep me"


@pytest.mark.parametrize("flag, value", [("--trials", "0"), ("--trials", "-3"), ("--budget-scale", "0"),
                                         ("--controller-lr", "nan")])
def test_bad_numbers_exit_2(tmp_path, capsys, flag, value):
    args = ["search", "--tasks", "sms_spam", "--trials", "2", "--out", str(tmp_path), flag, value]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


def test_listing_commands(capsys):
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    assert "taml-text  (12 decisions" in out and "mnms-text  (7 decisions" in out
    assert main(["modules"]) == 0
    out = capsys.readouterr().out
    assert "glove-6b-50d" in out and "all-minilm-l6-v2" in out


def test_installed_command_reports_bad_task_without_traceback(tmp_path, samples_dir):
    env = {**os.environ, "TAML_DATA_DIR": str(samples_dir)}
    proc = subprocess.run([str(TAML), "search", "--tasks", "nope", "--trials", "1", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"taml: error: unknown task 'nope': no {samples_dir}/nope.parquet; "
                                   f"tasks in {samples_dir}: customer_reviews, mpqa, sms_spam")

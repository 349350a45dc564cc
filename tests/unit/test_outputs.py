"""Outputs never clobber a search, and an existing file is replaced only with --force
(transfer_automl.outputs, wired into every command that takes --out)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from transfer_automl.cli import main
from transfer_automl.errors import ConfigError
from transfer_automl.outputs import check_output_dir, check_output_file, search_owning


def _search(out: Path, table: Path) -> None:
    assert main(["search", "--table", str(table), "--metric-columns", "t1,t2", "--trials", "2", "--method", "rs",
                 "--out", str(out), "--no-progress"]) == 0


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "mlflow.db"}


def _refused(args: list[str], capsys, *needles: str) -> str:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(n in err[0] for n in needles), err
    return err[0]


@pytest.fixture
def search(tmp_path, toy_table):
    out = tmp_path / "search"
    _search(out, toy_table)
    return out


@pytest.mark.parametrize("entry", ["checkpoint.pt", "settings.json", "space.yaml", "mlflow.db", "ledger",
                                   "ledger/round-000000.parquet", "rounds/000000/trials.json", "lease.json"])
def test_a_report_is_never_written_over_a_search_file_even_with_force(search, capsys, entry):
    before = _digest(search)
    _refused(["report", str(search), "--out", str(search / entry), "--force"], capsys, "belongs to the search", entry)
    assert _digest(search) == before


def test_a_report_beside_the_search_is_fine_and_replaced_only_with_force(search, capsys):
    out = search / "report.html"
    assert main(["report", str(search), "--out", str(out)]) == 0
    first = out.read_bytes()
    out.write_text("mine")
    _refused(["report", str(search), "--out", str(out)], capsys, "exists; pass --force")
    assert out.read_text() == "mine"
    assert main(["report", str(search), "--out", str(out), "--force"]) == 0
    assert out.read_bytes()[:15] == first[:15] and out.read_text() != "mine"


def test_a_report_to_a_directory_or_under_a_file_is_one_line(search, tmp_path, capsys):
    _refused(["report", str(search), "--out", str(tmp_path)], capsys, "is a directory")
    blocker = tmp_path / "plain.txt"
    blocker.write_text("x")
    _refused(["report", str(search), "--out", str(blocker / "r.html")], capsys, "is a file, not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_report_into_a_read_only_directory_is_one_line(search, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _refused(["report", str(search), "--out", str(locked / "r.html")], capsys, "is not writable")
    finally:
        locked.chmod(0o700)


def test_a_search_may_not_start_inside_another_search_s_files_or_on_a_file(search, tmp_path, toy_table, capsys):
    before = _digest(search)
    base = ["search", "--table", str(toy_table), "--metric-columns", "t1,t2", "--trials", "2", "--method", "rs",
            "--no-progress", "--out"]
    _refused([*base, str(search / "ledger" / "nested")], capsys, "belongs to the search", "ledger")
    _refused([*base, str(search / "checkpoint.pt")], capsys, "is a file, not a directory")
    assert _digest(search) == before


def test_transfer_into_a_search_is_refused(search, capsys, samples_dir):
    before = _digest(search)
    _refused(["transfer", "--target", "mpqa", "--from", str(search), "--out", str(search / "rounds"),
              "--data-dir", str(samples_dir)], capsys, "belongs to the search")
    assert _digest(search) == before


def test_directory_outputs_need_force_for_existing_files(tmp_path):
    (tmp_path / "distance.png").write_text("old")
    with pytest.raises(ConfigError, match="already has distance.png; pass --force"):
        check_output_dir(tmp_path, ["distance.parquet", "distance.png"])
    assert check_output_dir(tmp_path, ["distance.parquet", "distance.png"], force=True) == tmp_path
    (tmp_path / "regret_t1.png").write_text("old")
    with pytest.raises(ConfigError, match="regret_t1.png"):
        check_output_dir(tmp_path, ["regret_*.png"])
    assert check_output_dir(tmp_path / "new" / "deeper", ["a.txt"]) == tmp_path / "new" / "deeper"


def test_a_fifo_is_not_an_output(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        check_output_file(fifo, force=True)


def test_only_a_search_directory_owns_its_entries(tmp_path):
    (tmp_path / "checkpoint.pt").write_text("not a search on its own?")  # a checkpoint makes it a search
    assert search_owning(tmp_path / "space.yaml") == (tmp_path.absolute(), "space.yaml")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert search_owning(plain / "space.yaml") is None  # no search in plain/: any file name is fine
    assert search_owning(tmp_path / "report.html") is None

"""Files that look right but are not: a ledger with another search's or doubled rows, a checkpoint
whose checksum is valid but whose fields are not, an option that does not apply. Each is one line,
exit 2, and the search directory is left as it was."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transfer_automl.cli import main
from transfer_automl.search import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow  # whole (tiny) searches through the command line


def _search(out: Path, table: Path, search_id: str, *extra: str) -> list[str]:
    args = ["search", "--table", str(table), "--metric-columns", "t1,t2", "--trials", "4", "--batch-size", "2",
            "--method", "rs", "--search-id", search_id, "--out", str(out), "--no-progress", *extra]
    assert main(args) == 0
    return args


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "mlflow.db"}


def _refused(args: list[str], capsys, *needles: str) -> None:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(n in err[0] for n in needles), err


def test_a_round_file_of_another_search_is_refused_by_name(tmp_path, toy_table, capsys):
    mine, other = tmp_path / "mine", tmp_path / "other"
    args = _search(mine, toy_table, "mine")
    _search(other, toy_table, "other")
    shutil.copy(other / "ledger" / "round-000000.parquet", mine / "ledger" / "round-000099.parquet")
    before = _digest(mine)
    _refused([*args[:-1], "--trials", "8", "--resume"], capsys, "round-000099.parquet", "'other/000000/000'")
    assert _digest(mine) == before


def test_a_doubled_row_is_refused_by_name(tmp_path, toy_table, capsys):
    out = tmp_path / "s"
    args = _search(out, toy_table, "s")
    path = out / "ledger" / "round-000001.parquet"
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)
    _refused([*args, "--trials", "8", "--resume"], capsys, "round-000001.parquet", "twice")


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("step", -3, "step must be an integer >= 0"), ("step", "seven", "step must be an integer >= 0"),
    ("tasks", [], "tasks must be a non-empty list"), ("search_id", 7, "search_id must be a non-empty string"),
])
def test_a_checkpoint_with_a_valid_checksum_but_a_bad_field_is_refused(tmp_path, toy_table, capsys, field, value,
                                                                        needle):
    out = tmp_path / "s"
    args = _search(out, toy_table, "s")
    body = load_checkpoint(out / "checkpoint.pt")
    save_checkpoint(out / "checkpoint.pt", {**body, field: value})  # re-framed: the checksum is valid
    before = _digest(out)
    _refused([*args, "--resume"], capsys, "checkpoint", needle)
    assert _digest(out) == before


def test_space_does_not_apply_with_a_benchmark(tmp_path, capsys):
    _refused(["search", "--benchmark", "nasbench201", "--space", "taml-text", "--trials", "2", "--out",
              str(tmp_path / "s"), "--no-progress"], capsys, "--space", "does not apply")
    assert not (tmp_path / "s").exists()


def _lease_file(out: Path, host: str, pid: int, expires_in: float) -> None:
    import json
    import time

    out.mkdir(parents=True, exist_ok=True)
    (out / "lease.json").write_text(json.dumps({"host": host, "pid": pid, "expires_at": time.time() + expires_in}))


def test_a_second_runner_on_one_directory_is_refused_naming_the_holder(tmp_path, toy_table, capsys):
    import os

    from transfer_automl.study import SearchDir
    from transfer_automl.study.lease import Lease

    out = tmp_path / "s"
    args = ["search", "--table", str(toy_table), "--metric-columns", "t1,t2", "--trials", "2", "--out", str(out),
            "--no-progress", "--method", "rs"]
    with Lease(SearchDir(out), ttl_s=30):  # another runner holds it (here: this process)
        _refused(args, capsys, "is being run by pid", str(os.getpid()))
        assert not (out / "checkpoint.pt").exists()
    assert not (out / "lease.json").exists()  # released
    assert main(args) == 0 and not (out / "lease.json").exists()  # taken and given back


def test_a_stale_lease_is_taken_over_and_a_live_one_elsewhere_is_not(tmp_path, toy_table, capsys):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    out = tmp_path / "s"
    args = ["search", "--table", str(toy_table), "--metric-columns", "t1,t2", "--trials", "2", "--out", str(out),
            "--no-progress", "--method", "rs"]
    _lease_file(out, socket.gethostname(), int(dead.stdout), expires_in=60)  # its process is gone
    assert main(args) == 0
    _lease_file(out, "elsewhere", 1, expires_in=-1)  # expired
    assert main([*args, "--resume", "--trials", "4"]) == 0
    _lease_file(out, "elsewhere", 1, expires_in=60)  # alive, on another host
    _refused([*args, "--resume", "--trials", "6"], capsys, "pid 1 on elsewhere")


def _quarantined(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out / "quarantine").rglob("*") if p.is_file()}


def test_repair_sets_a_foreign_round_aside_and_the_search_resumes(tmp_path, toy_table, capsys):
    mine, other = tmp_path / "mine", tmp_path / "other"
    args = _search(mine, toy_table, "mine")
    _search(other, toy_table, "other")
    foreign = (other / "ledger" / "round-000000.parquet").read_bytes()
    (mine / "ledger" / "round-000099.parquet").write_bytes(foreign)
    (mine / "ledger" / "notes.txt").write_text("pyarrow would read me as part of the ledger")
    capsys.readouterr()
    assert main(["runs", "repair", str(mine)]) == 0
    out = capsys.readouterr().out
    assert "round-000099.parquet: moved to quarantine" in out and "notes.txt: moved to quarantine" in out
    assert _quarantined(mine)["round-000099.parquet"] == foreign  # kept, byte for byte
    assert sorted(p.name for p in (mine / "ledger").iterdir()) == ["round-000000.parquet", "round-000001.parquet"]
    assert main([*args[:-1], "--trials", "8", "--resume"]) == 0
    rows = pq.read_table(mine / "ledger").to_pylist()
    assert len(rows) == 8 and all(r["search_id"] == "mine" for r in rows)
    assert main(["runs", "repair", str(mine)]) == 0
    assert "nothing to repair" in capsys.readouterr().out


def test_repair_drops_a_doubled_row_keeping_the_original_aside(tmp_path, toy_table, capsys):
    out = tmp_path / "s"
    args = _search(out, toy_table, "s")
    path = out / "ledger" / "round-000001.parquet"
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)
    doubled = path.read_bytes()
    assert main(["runs", "repair", str(out), "--json"]) == 0
    assert "1 row(s) doubled" in capsys.readouterr().out
    assert pq.read_table(path).num_rows == table.num_rows
    assert _quarantined(out)["round-000001.parquet"] == doubled
    assert main([*args, "--trials", "8", "--resume"]) == 0


def test_repair_refuses_a_directory_without_a_search_and_a_running_search(tmp_path, toy_table, capsys):
    from transfer_automl.study import SearchDir
    from transfer_automl.study.lease import Lease

    _refused(["runs", "repair", str(tmp_path / "nothing")], capsys, "holds no search")
    out = tmp_path / "s"
    _search(out, toy_table, "s")
    before = _digest(out)
    with Lease(SearchDir(out), ttl_s=30):
        _refused(["runs", "repair", str(out)], capsys, "is being run by pid")
    assert _digest(out) == before

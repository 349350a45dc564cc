"""S3 through a fault-injecting proxy: transient faults are retried, a persistent one fails clearly.

The store talks HTTP to tests/s3_fault_proxy.py, which forwards to the moto server and fails a
set fraction of requests: 503 SlowDown, 500, connections dropped before or after the request
reached S3, and stalls past the client's timeout.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pyarrow as pa
import pytest

from s3_fault_proxy import FAULTS, FaultProxy
from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401
from transfer_automl.errors import StorageError
from transfer_automl.storage import get_store

pytestmark = pytest.mark.e2e

FAULT_RATE = 0.2


@pytest.fixture
def proxy(moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The AWS environment points at a proxy that fails FAULT_RATE of the requests to moto."""
    fault_proxy = FaultProxy(moto_server, fault_rate=FAULT_RATE, seed=7, stall_s=2.0).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", fault_proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "10")  # 0.2 ** 10: no operation here runs out of tries
    monkeypatch.setenv("TAML_S3_TIMEOUT_S", "0.5")  # a stall costs half a second, not a minute
    try:
        yield fault_proxy
    finally:
        fault_proxy.stop()


def test_every_operation_is_exact_under_transient_faults(proxy: FaultProxy, s3_bucket: str, tmp_path) -> None:
    store = get_store(f"s3://{s3_bucket}/faulty")
    store.page_size = 7  # many list pages, each one a request that can fail

    blobs = {f"blobs/{i:03d}.bin": os.urandom(1000 + i) for i in range(30)}
    for i, (key, data) in enumerate(blobs.items()):
        store.put_bytes(key, data, if_absent=i % 2 == 0)  # conditional PUTs are retried safely too
    tables = {f"ledger/round-{i:06d}.parquet": pa.table({"trial": list(range(i, i + 5))}) for i in range(5)}
    for key, table in tables.items():
        store.write_parquet(key, table, if_absent=True)
    digest = store.put_with_checksum("checkpoint.pt", b"weights" * 1000)

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * 1024 * 1024))
    store.multipart_threshold = store.multipart_chunksize = 5 * 1024 * 1024  # 3 parts
    store.put_file("features/big.bin", big, if_absent=True)
    store.get_file("features/big.bin", tmp_path / "back.bin")

    assert all(store.get_bytes(key) == data for key, data in blobs.items())
    assert store.list("blobs/") == sorted(blobs)
    assert all(store.read_parquet(key).equals(table) for key, table in tables.items())
    assert hashlib.sha256(store.get_with_checksum("checkpoint.pt")).hexdigest() == digest
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()

    counts = proxy.counts
    print(f"\nS3 at {FAULT_RATE:.0%} injected faults: {counts['requests']} requests, {proxy.injected} failed "
          f"({', '.join(f'{f} {counts[f]}' for f in FAULTS)}), every operation exact")
    assert proxy.injected >= 10
    assert all(counts[f] > 0 for f in FAULTS), counts


def test_a_persistent_outage_fails_with_one_clear_error_and_keeps_what_was_written(
        proxy: FaultProxy, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    store = get_store(f"s3://{s3_bucket}/outage")
    proxy.fault_rate = 0.0
    store.put_bytes("ledger/round-000000.parquet", b"committed")

    proxy.fault_rate, proxy.faults = 1.0, ("slowdown", "internal")
    with pytest.raises(StorageError) as err:
        store.put_bytes("ledger/round-000000.parquet", b"half a round")
    message = str(err.value)
    assert f"s3://{s3_bucket}/outage/ledger/round-000000.parquet" in message
    assert "SlowDown" in message or "InternalError" in message
    assert "\n" not in message

    proxy.fault_rate = 0.0
    assert store.get_bytes("ledger/round-000000.parquet") == b"committed"


def test_a_conditional_put_lost_in_flight_is_not_a_conflict_but_other_content_is(
        proxy: FaultProxy, s3_bucket: str) -> None:
    """drop_after: S3 applied the PUT, the answer was lost; the retry sees its own object (412)."""
    store = get_store(f"s3://{s3_bucket}/lost-answer")
    proxy.fault_rate = 0.0
    store.put_bytes("a", b"first")

    proxy.script = ["drop_after"]
    store.put_bytes("b", b"mine", if_absent=True)
    assert proxy.counts["drop_after"] == 1 and not proxy.script
    assert store.get_bytes("b") == b"mine"

    proxy.script = ["drop_after"]
    store.write_parquet("round.parquet", pa.table({"x": [1, 2]}), if_absent=True)  # upload_file path
    assert store.read_parquet("round.parquet").column("x").to_pylist() == [1, 2]

    with pytest.raises(StorageError, match="already exists"):  # other bytes: a real conflict
        store.put_bytes("a", b"someone else's", if_absent=True)
    assert store.get_bytes("a") == b"first"


def test_a_whole_search_on_s3_completes_with_an_exact_ledger_under_transient_faults(
        proxy: FaultProxy, s3_bucket: str, toy_table, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ledger commits and reads, checkpoints and the space file all cross the faulty proxy."""
    from transfer_automl.search import Ledger
    from transfer_automl.steps.search import run_search
    from transfer_automl.study import SearchSettings
    from transfer_automl.tracking import MemoryTracker

    monkeypatch.setenv("TAML_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    def settings(out: str, table: str) -> SearchSettings:
        return SearchSettings(tasks=(), trials=24, out=out, table=table, metric_columns=("t1", "t2"),
                              method="reinforce", batch_size=2, seed=3, search_id="faulty", progress=False)

    faulty = run_search(settings(f"s3://{s3_bucket}/runs/faulty", str(toy_table)), tracker=MemoryTracker())
    counts = dict(proxy.counts)
    proxy.fault_rate = 0.0
    clean = run_search(settings(str(tmp_path / "clean"), str(toy_table)), tracker=MemoryTracker())

    def rows(root: str) -> list[tuple]:
        return [(r["trial_id"], r["task"], r["config"], r["reward"], r["status"])
                for r in Ledger(root).read().to_pylist()]

    faulty_rows, clean_rows = rows(f"s3://{s3_bucket}/runs/faulty/ledger"), rows(str(tmp_path / "clean" / "ledger"))
    print(f"\nsearch on S3 at {FAULT_RATE:.0%} injected faults: {counts['requests']} requests, "
          f"{sum(counts.get(f, 0) for f in FAULTS)} failed and retried, {faulty.trials_run} trials completed, "
          f"ledger {'exact' if faulty_rows == clean_rows else 'DIFFERENT'} ({len(faulty_rows)} rows, "
          f"{len(faulty_rows) - len({r[0] for r in faulty_rows})} duplicated)")
    assert faulty.trials_run == clean.trials_run == 24
    assert faulty_rows == clean_rows and len({r[0] for r in faulty_rows}) == 24
    assert sum(counts.get(f, 0) for f in FAULTS) >= 5

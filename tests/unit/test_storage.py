"""One set of ArtifactStore interface tests, run against LocalStore and S3Store (a real HTTP
endpoint: moto's threaded server, see tests/s3_fixtures.py)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from s3_fixtures import TEST_ACCESS_KEY, TEST_SECRET_KEY, moto_server, s3_bucket, s3_env  # noqa: F401
from transfer_automl.errors import StorageError, TamlError
from transfer_automl.storage import ArtifactStore, LocalStore, get_store
from transfer_automl.storage import local as local_module

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ArtifactStore:
    if request.param == "local":
        return get_store(str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3_bucket")
    return get_store(f"s3://{bucket}/runs/demo")


def _is_s3(store: ArtifactStore) -> bool:
    return store.uri.startswith("s3://")


def _no_secret(message: str) -> None:
    assert TEST_SECRET_KEY not in message
    assert TEST_ACCESS_KEY not in message


# -- basics ------------------------------------------------------------------------------------
def test_put_get_exists_delete(store):
    assert not store.exists("a/b.txt")
    store.put_bytes("a/b.txt", b"one")
    assert store.exists("a/b.txt")
    assert store.get_bytes("a/b.txt") == b"one"
    store.put_bytes("a/b.txt", b"two")  # overwrite
    assert store.get_bytes("a/b.txt") == b"two"
    store.delete("a/b.txt")
    assert not store.exists("a/b.txt")
    store.delete("a/b.txt")  # deleting a missing key is not an error
    assert store.list() == []


def test_join_gives_uri_under_root(store):
    assert store.join("ledger", "round-000001.parquet") == f"{store.uri}/ledger/round-000001.parquet"
    assert store.join("a/", "/b") == f"{store.uri}/a/b"


def test_list_sorted_by_prefix_with_pagination(store, monkeypatch):
    keys = [f"ledger/round-{i:06d}.parquet" for i in range(25)]
    for k in reversed(keys):
        store.put_bytes(k, b"x")
    store.put_bytes("ledgerx/other", b"y")
    store.put_bytes("checkpoint.pt", b"z")
    store.page_size = 10
    calls = []
    if _is_s3(store):
        original = store._client.list_objects_v2
        monkeypatch.setattr(store._client, "list_objects_v2", lambda **kw: calls.append(kw) or original(**kw))
    assert store.list("ledger/") == keys
    if _is_s3(store):
        assert len(calls) == 3 and all(c["MaxKeys"] == 10 for c in calls)
    assert store.list("ledger/round-00001") == keys[10:20]
    assert store.list() == sorted([*keys, "ledgerx/other", "checkpoint.pt"])
    assert store.list("nothing/") == []


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "..", "./a", "a\\b"])
def test_bad_keys_refused(store, key):
    with pytest.raises(StorageError, match="storage key"):
        store.put_bytes(key, b"x")


def test_missing_key_errors_name_the_key_and_no_secret(store, tmp_path):
    calls = [
        lambda: store.get_bytes("no/such.bin"),
        lambda: store.get_file("no/such.bin", tmp_path / "out.bin"),
        lambda: store.read_parquet("no/such.bin"),
        lambda: store.get_with_checksum("no/such.bin"),
    ]
    for call in calls:
        with pytest.raises(StorageError) as info:
            call()
        message = str(info.value)
        assert store.join("no/such.bin") in message and "does not exist" in message
        _no_secret(message)
    assert not (tmp_path / "out.bin").exists()
    assert isinstance(info.value, TamlError) and isinstance(info.value, OSError)


# -- if_absent ---------------------------------------------------------------------------------
def test_if_absent_refuses_second_write_and_keeps_first(store, tmp_path):
    store.put_bytes("ledger/round-000001.parquet", b"first", if_absent=True)
    with pytest.raises(StorageError, match="already exists") as info:
        store.put_bytes("ledger/round-000001.parquet", b"second", if_absent=True)
    assert store.join("ledger/round-000001.parquet") in str(info.value)
    assert store.get_bytes("ledger/round-000001.parquet") == b"first"

    local = tmp_path / "f.bin"
    local.write_bytes(b"file one")
    store.put_file("f.bin", local, if_absent=True)
    local.write_bytes(b"file two")
    with pytest.raises(StorageError, match="already exists"):
        store.put_file("f.bin", local, if_absent=True)
    assert store.get_bytes("f.bin") == b"file one"

    table = pa.table({"x": [1, 2]})
    store.write_parquet("t.parquet", table, if_absent=True)
    with pytest.raises(StorageError, match="already exists"):
        store.write_parquet("t.parquet", pa.table({"x": [3]}), if_absent=True)
    assert store.read_parquet("t.parquet").equals(table)
    assert sorted(store.list()) == ["f.bin", "ledger/round-000001.parquet", "t.parquet"]


def test_if_absent_race_has_exactly_one_winner(store):
    results: list[object] = []
    barrier = threading.Barrier(6)

    def write(i: int) -> None:
        barrier.wait()
        try:
            store.put_bytes("race.bin", f"writer {i}".encode(), if_absent=True)
            results.append(i)
        except StorageError as exc:
            results.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if isinstance(r, int)]
    assert len(winners) == 1, results
    assert store.get_bytes("race.bin") == f"writer {winners[0]}".encode()


# -- atomicity ---------------------------------------------------------------------------------
def _break_puts(store: ArtifactStore, monkeypatch) -> None:
    """Make the next writes fail midway: half the bytes land in the temp file (local), or the
    connection drops while the PUT is on the wire (S3)."""
    if _is_s3(store):
        def drop(**_):
            raise ConnectionResetError("injected: connection reset mid-request")

        store._client.meta.events.register_first("before-send.s3.PutObject", drop)
    else:
        def half(path, data):
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            raise OSError("injected: disk full midway")

        monkeypatch.setattr(local_module, "_write_bytes", half)


def test_failed_write_leaves_old_object_and_no_temporaries(store, monkeypatch):
    store.put_bytes("ckpt/state.bin", b"old state " * 100)
    store.put_with_checksum("ckpt/checked.bin", b"old checked")
    _break_puts(store, monkeypatch)
    with pytest.raises(OSError, match="injected"):
        store.put_bytes("ckpt/state.bin", b"new state " * 100)
    with pytest.raises(OSError, match="injected"):
        store.put_with_checksum("ckpt/checked.bin", b"new checked")
    with pytest.raises(OSError, match="injected"):
        store.put_bytes("ckpt/fresh.bin", b"never")
    assert store.get_bytes("ckpt/state.bin") == b"old state " * 100
    assert store.get_with_checksum("ckpt/checked.bin") == b"old checked"
    assert store.list() == ["ckpt/checked.bin", "ckpt/state.bin"]
    if not _is_s3(store):
        assert sorted(p.name for p in (Path(store.uri) / "ckpt").iterdir()) == ["checked.bin", "state.bin"]


def test_failed_multipart_upload_is_aborted_and_old_object_kept(store, tmp_path, monkeypatch):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * MiB))
    store.put_bytes("features/cache.bin", b"old cache")
    if _is_s3(store):
        store.multipart_threshold = store.multipart_chunksize = 5 * MiB
        parts = []

        def fail_second_part(**_):
            parts.append(1)
            if len(parts) >= 2:
                raise ConnectionResetError("injected: connection reset during part upload")

        store._client.meta.events.register_first("before-send.s3.UploadPart", fail_second_part)
    else:
        def half_copy(src, dst):
            Path(dst).write_bytes(Path(src).read_bytes()[: 3 * MiB])
            raise OSError("injected: disk full midway")

        monkeypatch.setattr(local_module.shutil, "copyfile", half_copy)
    with pytest.raises(OSError, match="injected"):
        store.put_file("features/cache.bin", big)
    assert store.get_bytes("features/cache.bin") == b"old cache"
    assert store.list() == ["features/cache.bin"]
    if _is_s3(store):
        uploads = store._client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        assert uploads == []


# -- checksums ---------------------------------------------------------------------------------
def test_checksum_round_trip_and_tamper_detected(store):
    payload = os.urandom(4096)
    digest = store.put_with_checksum("ckpt/search.pt", payload)
    assert digest == hashlib.sha256(payload).hexdigest()
    assert store.get_with_checksum("ckpt/search.pt") == payload

    raw = bytearray(store.get_bytes("ckpt/search.pt"))
    raw[-1] ^= 0xFF  # flip one payload bit behind the store's back
    store.put_bytes("ckpt/search.pt", bytes(raw))
    with pytest.raises(StorageError, match="fails its checksum") as info:
        store.get_with_checksum("ckpt/search.pt")
    assert store.join("ckpt/search.pt") in str(info.value)

    store.put_bytes("ckpt/search.pt", payload[:100])  # a plain object, no header
    with pytest.raises(StorageError, match="no SHA-256 header"):
        store.get_with_checksum("ckpt/search.pt")


def test_checksum_tamper_of_local_file_on_disk(tmp_path):
    store = LocalStore(tmp_path)
    store.put_with_checksum("c.pt", b"weights")
    path = tmp_path / "c.pt"
    path.write_bytes(path.read_bytes().replace(b"weights", b"weightz"))
    with pytest.raises(StorageError, match="fails its checksum"):
        store.get_with_checksum("c.pt")


# -- Parquet and files -------------------------------------------------------------------------
def test_parquet_round_trip_and_dataset(store):
    schema = pa.schema([("trial_id", pa.string()), ("reward", pa.float64()),
                        ("ended_at", pa.timestamp("us", tz="UTC"))])
    t1 = pa.table({"trial_id": ["a", "b"], "reward": [0.5, 0.25], "ended_at": [0, 1]}, schema=schema)
    t2 = pa.table({"trial_id": ["c"], "reward": [1.0], "ended_at": [2]}, schema=schema)
    store.write_parquet("ledger/round-000000.parquet", t1)
    store.write_parquet("ledger/round-000001.parquet", t2, if_absent=True)
    back = store.read_parquet("ledger/round-000000.parquet")
    assert back.equals(t1) and back.schema.equals(schema)
    assert store.read_parquet("ledger/round-000001.parquet", columns=["trial_id"]).column(0).to_pylist() == ["c"]
    fs, path = store.arrow_location("ledger")
    whole = ds.dataset(path, filesystem=fs, format="parquet").to_table().sort_by("trial_id")
    assert whole.column("trial_id").to_pylist() == ["a", "b", "c"]
    store.put_bytes("junk.parquet", b"not parquet")
    with pytest.raises(StorageError, match="not readable Parquet"):
        store.read_parquet("junk.parquet")


def test_put_get_large_file_multipart(store, tmp_path):
    data = os.urandom(6 * MiB + 123)
    src = tmp_path / "features.bin"
    src.write_bytes(data)
    if _is_s3(store):
        store.multipart_threshold = store.multipart_chunksize = 5 * MiB
    store.put_file("features/minilm.bin", src)
    dst = tmp_path / "out" / "features.bin"
    store.get_file("features/minilm.bin", dst)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert [p.name for p in dst.parent.iterdir()] == ["features.bin"]
    if _is_s3(store):
        head = store._client.head_object(Bucket=store.bucket, Key="runs/demo/features/minilm.bin")
        assert head["ETag"].strip('"').endswith("-2"), head["ETag"]  # two parts: it was multipart
    # if_absent holds for a multipart upload too (If-None-Match on CompleteMultipartUpload)
    src.write_bytes(os.urandom(6 * MiB))
    with pytest.raises(StorageError, match="already exists"):
        store.put_file("features/minilm.bin", src, if_absent=True)
    store.get_file("features/minilm.bin", dst)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    if _is_s3(store):
        assert store._client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


# -- S3 specifics ------------------------------------------------------------------------------
def test_s3_endpoint_and_region_come_from_environment(request, monkeypatch):
    bucket = request.getfixturevalue("s3_bucket")
    store = get_store(f"s3://{bucket}")
    assert store._client.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL"]
    assert store._client.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    fs = store.arrow_filesystem()
    assert fs.region == "us-east-1"
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    assert get_store(f"s3://{bucket}")._client.meta.config.retries["total_max_attempts"] == 2


@pytest.mark.usefixtures("s3_env")
def test_s3_unreachable_endpoint_error_has_no_secret(monkeypatch):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    from transfer_automl.storage.s3 import S3Store

    store = S3Store("s3://some-bucket/p", max_attempts=1)
    with pytest.raises(StorageError) as info:
        store.put_bytes("k.bin", b"x")
    assert "s3://some-bucket/p/k.bin" in str(info.value)
    _no_secret(str(info.value))


@pytest.mark.usefixtures("s3_env")
def test_s3_missing_bucket_is_a_storage_error():
    store = get_store("s3://taml-no-such-bucket-here/x")
    with pytest.raises(StorageError, match="taml-no-such-bucket-here") as info:
        store.put_bytes("k", b"x")
    _no_secret(str(info.value))


# -- get_store and layering --------------------------------------------------------------------
def test_get_store_dispatch(tmp_path):
    assert isinstance(get_store(str(tmp_path)), LocalStore)
    assert isinstance(get_store(tmp_path), LocalStore)
    assert get_store(f"file://{tmp_path}").uri == str(tmp_path)
    from transfer_automl.storage.s3 import S3Store

    s3 = get_store("s3://bkt/a/b/")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix, s3.uri) == ("bkt", "a/b", "s3://bkt/a/b")
    for bad in ["gs://bkt/x", "http://host/x", "s3://", "", "file://", "file://remote/x"]:
        with pytest.raises(StorageError) as info:
            get_store(bad)
        assert repr(bad) in str(info.value)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_local_outputs_get_the_users_umask_not_0600(tmp_path, umask):
    """mkstemp makes a temporary file 0600 and the rename would carry that to the user's output;
    every local write path gives the mode a plain open() would (0o666 & ~umask)."""
    from transfer_automl.storage import atomic_write

    previous = os.umask(umask)
    try:
        assert local_module.new_file_mode() == 0o666 & ~umask
        store = LocalStore(tmp_path / "store")
        store.put_bytes("a.json", b"{}")
        store.put_bytes("b.json", b"{}", if_absent=True)
        (tmp_path / "src.bin").write_bytes(b"x")
        store.put_file("c.bin", tmp_path / "src.bin")
        store.write_parquet("d.parquet", pa.table({"x": [1]}))
        store.get_file("a.json", tmp_path / "copy.json")
        written = [store.path(k) for k in ("a.json", "b.json", "c.bin", "d.parquet")]
        written += [tmp_path / "copy.json", atomic_write(tmp_path / "report.html", lambda t: Path(t).write_text("x"))]
    finally:
        os.umask(previous)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(0o666 & ~umask) for p in written}

"""Unit tests for the Parquet trial ledger and the self-describing controller checkpoints."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch

from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401
from transfer_automl.errors import CheckpointError, LedgerError
from transfer_automl.search import ReinforceSearch
from transfer_automl.search.checkpoint import (
    FORMAT_VERSION,
    REQUIRED_KEYS,
    load_checkpoint,
    read_checkpoint_file,
    save_checkpoint,
)
from transfer_automl.search.ledger import SCHEMA, Ledger
from transfer_automl.space import MNMS_TEXT, TAML_TEXT
from transfer_automl.storage import LocalStore

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _rows(step: int, n: int, search_id: str = "s", first: int = 0) -> list[dict]:
    rows = []
    for k in range(first, first + n):
        started = T0 + timedelta(minutes=10 * step + k)
        rows.append({
            "trial_id": f"{search_id}/{step:06d}/{k:03d}",
            "search_id": search_id,
            "task": "ab"[k % 2],
            "controller_step": step,
            "config": json.dumps({"layers": k + 1}),
            "reward": 0.5 + 0.01 * k,
            "val_accuracy": 0.5 + 0.01 * k,
            "test_accuracy": 0.4 + 0.01 * k,
            "status": "ok",
            "error": None,
            "started_at": started,
            "ended_at": started + timedelta(seconds=30),
            "duration_s": 30.0,
        })
    return rows


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")


# -- ledger -----------------------------------------------------------------------------------


def test_append_rounds_one_file_per_step_readable_as_dataset(tmp_path):
    root = tmp_path / "ledger"
    ledger = Ledger(root)
    assert ledger.files() == []
    p0 = ledger.append_round(0, _rows(0, 3))
    p1 = ledger.append_round(1, _rows(1, 2))
    p12 = ledger.append_round(12, _rows(12, 4))
    assert p0 == root / "round-000000.parquet"
    assert p1 == root / "round-000001.parquet"
    assert p12 == root / "round-000012.parquet"
    assert sorted(p.name for p in root.iterdir()) == [
        "round-000000.parquet", "round-000001.parquet", "round-000012.parquet",
    ]
    assert ledger.files() == [p0, p1, p12]

    table = ds.dataset(root).to_table()
    assert table.schema.names == SCHEMA.names
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert table.num_rows == 3 + 2 + 4
    assert pq.read_table(p1).num_rows == 2
    assert set(pq.read_table(p12).column("controller_step").to_pylist()) == {12}


def test_read_returns_all_rows_in_step_order_with_values(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append_round(2, list(reversed(_rows(2, 3))))
    ledger.append_round(0, _rows(0, 2))
    table = ledger.read()
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert table.column("trial_id").to_pylist() == [
        "s/000000/000", "s/000000/001", "s/000002/000", "s/000002/001", "s/000002/002",
    ]
    first = table.slice(0, 1).to_pylist()[0]
    assert first["started_at"] == T0
    assert first["ended_at"] == T0 + timedelta(seconds=30)
    assert first["error"] is None
    assert json.loads(first["config"]) == {"layers": 1}
    assert first["reward"] == 0.5


def test_read_empty_ledger(tmp_path):
    table = Ledger(tmp_path / "missing").read()
    assert table.num_rows == 0
    assert table.schema.equals(SCHEMA)


def test_reappending_same_trials_is_a_noop(tmp_path):
    ledger = Ledger(tmp_path)
    path = ledger.append_round(3, _rows(3, 3))
    before = path.read_bytes()
    # same ids, other order and other values: still a no-op, the first write wins
    again = [dict(r, reward=-1.0) for r in reversed(_rows(3, 3))]
    assert ledger.append_round(3, again) == path
    assert ledger.append_round(3, _rows(3, 3)) == path
    assert path.read_bytes() == before
    assert ledger.read().num_rows == 3
    assert ds.dataset(tmp_path).to_table().num_rows == 3
    assert ledger.read().column("reward").to_pylist() == [0.5, 0.51, 0.52]


@pytest.mark.parametrize(
    "other",
    [
        lambda: _rows(3, 2),  # a subset of the ids
        lambda: _rows(3, 4),  # a superset
        lambda: _rows(3, 3, first=1),  # overlapping but different
        lambda: _rows(3, 3, search_id="other"),  # another search
    ],
)
def test_appending_other_trials_to_existing_step_raises_and_keeps_file(tmp_path, other):
    ledger = Ledger(tmp_path)
    path = ledger.append_round(3, _rows(3, 3))
    before = path.read_bytes()
    with pytest.raises(LedgerError, match="round-000003.parquet") as info:
        ledger.append_round(3, other())
    assert isinstance(info.value, ValueError)
    assert path.read_bytes() == before
    assert ledger.read().num_rows == 3
    assert _leftovers(tmp_path) == []


def test_foreign_schema_file_makes_read_raise_naming_it(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append_round(0, _rows(0, 2))
    foreign = tmp_path / "round-000001.parquet"
    pq.write_table(pa.table({"trial_id": ["x"], "score": [1.0]}), foreign)
    with pytest.raises(LedgerError) as info:
        ledger.read()
    message = str(info.value)
    assert str(foreign) in message
    assert "foreign schema" in message
    assert "reward" in message  # names a missing column


def test_wrong_column_type_is_a_foreign_schema(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append_round(0, _rows(0, 2))
    bad_schema = SCHEMA.set(SCHEMA.get_field_index("controller_step"), pa.field("controller_step", pa.string()))
    rows = [dict(r, controller_step="1") for r in _rows(1, 1)]
    pq.write_table(pa.Table.from_pylist(rows, schema=bad_schema), tmp_path / "round-000001.parquet")
    with pytest.raises(LedgerError, match="round-000001.parquet"):
        ledger.read()


def test_non_parquet_round_file_makes_read_raise_naming_it(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append_round(0, _rows(0, 1))
    junk = tmp_path / "round-000001.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(LedgerError, match="not readable Parquet") as info:
        ledger.read()
    assert str(junk) in str(info.value)


def test_foreign_parquet_file_with_other_name_makes_read_raise(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append_round(0, _rows(0, 2))
    foreign = tmp_path / "results.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), foreign)
    with pytest.raises(LedgerError, match="results.parquet"):
        ledger.read()


def test_no_temp_files_left_behind(tmp_path):
    ledger = Ledger(tmp_path)
    for step in range(3):
        ledger.append_round(step, _rows(step, 2))
    ledger.append_round(1, _rows(1, 2))  # no-op
    with pytest.raises(LedgerError):
        ledger.append_round(1, _rows(1, 3))
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"round-{s:06d}.parquet" for s in range(3)]


def test_rows_not_fitting_the_schema_write_nothing(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    bad = [dict(r, reward="high") for r in _rows(0, 1)]
    with pytest.raises((pa.ArrowException, TypeError, ValueError)):
        ledger.append_round(0, bad)
    assert not ledger.round_path(0).exists()
    assert ledger.read().num_rows == 0


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    import transfer_automl.search.ledger as ledger_module

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ledger_module.pq, "write_table", boom)
    ledger = Ledger(tmp_path)
    with pytest.raises(OSError):
        ledger.append_round(0, _rows(0, 1))
    assert not ledger.round_path(0).exists()
    assert list(tmp_path.iterdir()) == []


# -- checkpoints ------------------------------------------------------------------------------



def _write_framed(path, body) -> None:
    """What save_checkpoint writes, for any body: torch.save bytes framed with their SHA-256."""
    import io

    buffer = io.BytesIO()
    torch.save(body, buffer)
    LocalStore(path.parent).put_with_checksum(path.name, buffer.getvalue())


def _trained_search() -> ReinforceSearch:
    """A search after two told rounds, so weights, Adam state and baselines are non-trivial."""
    search = ReinforceSearch(space=TAML_TEXT, tasks=["a", "b"], search_id="s")
    for rewards in ([0.1, 0.5, 0.3, 0.9], [0.7, 0.2, 0.6, 0.4]):
        trials = search.ask(4)
        search.tell(trials, rewards)
    return search


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    search = _trained_search()
    path = tmp_path_factory.mktemp("ckpt") / "sub" / "controller.pt"
    payload = search.state_dict()
    save_checkpoint(path, payload)
    return search, payload, path


def test_save_writes_one_file_with_format_version(saved):
    _, payload, path = saved
    assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["controller.pt"]  # no temp files
    assert path.read_bytes().startswith(b"TAMLSHA256 ")  # the SHA-256 header, then torch.save's bytes
    raw = read_checkpoint_file(path)  # torch.load(weights_only=True): nothing unpickled
    assert raw["format_version"] == FORMAT_VERSION == 2
    assert set(REQUIRED_KEYS) <= set(raw)
    assert "format_version" not in payload  # the payload dict itself is not modified


def test_load_with_space_and_tasks_gives_same_weights(saved):
    search, payload, path = saved
    body = load_checkpoint(path, space=TAML_TEXT, tasks=["a", "b"])
    assert body["space_fingerprint"] == TAML_TEXT.fingerprint()
    assert body["tasks"] == ["a", "b"]
    assert body["step"] == 2
    assert body["search_id"] == "s"
    original = search.controller.state_dict()
    loaded = body["controller_state"]
    assert list(loaded) == list(original)
    for name, tensor in original.items():
        assert torch.equal(loaded[name], tensor), name
    # the update state (Adam moments, baselines) comes back too
    assert body["update_state"]["baselines"] == search.update_rule.baselines.state_dict()
    assert body["update_state"]["baselines"]["count"] != [0, 0]
    assert torch.equal(body["generator_state"], payload["generator_state"])
    # the weights actually moved away from initialisation during the two rounds
    fresh = ReinforceSearch(space=TAML_TEXT, tasks=["a", "b"], search_id="s").controller.state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in original.items())


def test_load_without_space_or_tasks_skips_those_checks(saved):
    _, _, path = saved
    body = load_checkpoint(path)
    assert body["space_fingerprint"] == TAML_TEXT.fingerprint()


def test_from_checkpoint_restores_step_and_sampling(saved):
    _, _, path = saved
    # two identical searches: one keeps running, the other is restored from its checkpoint
    original = _trained_search()
    restored = ReinforceSearch.from_checkpoint(load_checkpoint(path, space=TAML_TEXT, tasks=["a", "b"]))
    assert restored.step == original.step == 2
    assert restored.search_id == "s"
    assert restored.tasks == ["a", "b"]
    assert restored.space.fingerprint() == TAML_TEXT.fingerprint()

    fresh = ReinforceSearch(space=TAML_TEXT, tasks=["a", "b"], search_id="s")
    fresh_trials = fresh.ask(3)

    a = original.ask(3)
    b = restored.ask(3)
    assert [t.config for t in b] == [t.config for t in a]
    assert [t.task for t in b] == [t.task for t in a]
    assert [t.trial_id for t in b] == [t.trial_id for t in a]
    assert a[0].trial_id == "s/000002/000"
    # the generator state matters: a fresh search draws other trials
    assert [(t.task, t.config) for t in fresh_trials] != [(t.task, t.config) for t in a]

    # and a further update keeps both in lock step (optimizer and baselines restored)
    rewards = [0.3, 0.8, 0.55]
    original.tell(a, rewards)
    restored.tell(b, rewards)
    for name, tensor in original.controller.state_dict().items():
        assert torch.equal(restored.controller.state_dict()[name], tensor), name
    assert [t.config for t in restored.ask(3)] == [t.config for t in original.ask(3)]


def test_load_with_other_space_raises_naming_fingerprints(saved):
    _, _, path = saved
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, space=MNMS_TEXT, tasks=["a", "b"])
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "fingerprint" in message
    assert TAML_TEXT.fingerprint() in message and MNMS_TEXT.fingerprint() in message
    assert str(path) in message


@pytest.mark.parametrize("tasks", [["b", "a"], ["a"], ["a", "b", "c"], ["x", "y"]])
def test_load_with_other_tasks_raises_naming_them(saved, tasks):
    _, _, path = saved
    with pytest.raises(CheckpointError, match="tasks") as info:
        load_checkpoint(path, space=TAML_TEXT, tasks=tasks)
    assert str(tasks) in str(info.value)
    assert "['a', 'b']" in str(info.value)


def test_truncated_checkpoint(saved, tmp_path):
    _, _, path = saved
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="fails its checksum") as info:
        load_checkpoint(truncated, space=TAML_TEXT, tasks=["a", "b"])
    assert str(truncated) in str(info.value)


def test_tampered_checkpoint_fails_its_checksum(saved, tmp_path):
    _, _, path = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the weights
    tampered = tmp_path / "tampered.pt"
    tampered.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="fails its checksum") as info:
        load_checkpoint(tampered)
    assert str(tampered) in str(info.value)


def test_format_1_checkpoint_without_checksum_is_refused(saved, tmp_path):
    _, _, path = saved
    body = read_checkpoint_file(path)
    old = tmp_path / "old.pt"
    torch.save(dict(body, format_version=1), old)  # what taml wrote before checksums
    with pytest.raises(CheckpointError, match="format_version 1") as info:
        load_checkpoint(old)
    assert str(old) in str(info.value) and "SHA-256" in str(info.value)


def test_random_bytes_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(CheckpointError, match="unreadable") as info:
        load_checkpoint(junk)
    assert str(junk) in str(info.value)


def test_empty_file_checkpoint(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_checkpoint(empty)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_other_format_version(saved, tmp_path):
    _, _, path = saved
    body = read_checkpoint_file(path)
    body["format_version"] = 99
    other = tmp_path / "v99.pt"
    _write_framed(other, body)
    with pytest.raises(CheckpointError, match="format_version 99") as info:
        load_checkpoint(other, space=TAML_TEXT, tasks=["a", "b"])
    assert str(other) in str(info.value)


def test_missing_format_version(saved, tmp_path):
    _, _, path = saved
    body = read_checkpoint_file(path)
    del body["format_version"]
    other = tmp_path / "nov.pt"
    _write_framed(other, body)
    with pytest.raises(CheckpointError, match="format_version None"):
        load_checkpoint(other)


@pytest.mark.parametrize("key", [k for k in REQUIRED_KEYS if k != "format_version"])
def test_checkpoint_missing_a_key(saved, tmp_path, key):
    _, _, path = saved
    body = read_checkpoint_file(path)
    del body[key]
    other = tmp_path / "partial.pt"
    _write_framed(other, body)
    with pytest.raises(CheckpointError, match=key) as info:
        load_checkpoint(other, space=TAML_TEXT, tasks=["a", "b"])
    assert "lacks" in str(info.value)


def test_checkpoint_that_is_not_a_dict(tmp_path):
    other = tmp_path / "list.pt"
    _write_framed(other, [1, 2, 3])
    with pytest.raises(CheckpointError, match="not a transfer-automl checkpoint"):
        load_checkpoint(other)


def test_save_rejects_incomplete_payload_and_writes_nothing(saved, tmp_path):
    _, payload, _ = saved
    incomplete = {k: v for k, v in payload.items() if k != "generator_state"}
    target = tmp_path / "out" / "c.pt"
    with pytest.raises(CheckpointError, match="generator_state"):
        save_checkpoint(target, incomplete)
    assert not target.exists()
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_save_overwrites_atomically(saved, tmp_path):
    search, payload, _ = saved
    target = tmp_path / "c.pt"
    save_checkpoint(target, payload)
    save_checkpoint(target, dict(payload, step=7))
    assert load_checkpoint(target)["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


# -- the same ledger and checkpoints on S3 (moto's HTTP server) --------------------------------


def test_ledger_on_s3_commits_once_and_refuses_other_trials(s3_bucket):
    from transfer_automl.storage import get_store

    uri = f"s3://{s3_bucket}/run/ledger"
    ledger = Ledger(uri)
    store = ledger.store
    assert ledger.files() == [] and ledger.read().num_rows == 0
    assert ledger.append_round(0, _rows(0, 2)) == f"{uri}/round-000000.parquet"
    before = store.get_bytes("round-000000.parquet")
    assert ledger.append_round(0, [dict(r, reward=-1.0) for r in _rows(0, 2)]) == f"{uri}/round-000000.parquet"
    with pytest.raises(LedgerError, match=f"{uri}/round-000000.parquet already holds other trials"):
        ledger.append_round(0, _rows(0, 3))
    assert store.get_bytes("round-000000.parquet") == before
    ledger.append_round(1, _rows(1, 1))
    assert ledger.read().column("trial_id").to_pylist() == ["s/000000/000", "s/000000/001", "s/000001/000"]
    assert ledger.read_round(0)[0]["reward"] == 0.5 and ledger.read_round(2) is None
    # A ledger under a store's prefix is the same ledger.
    assert Ledger(get_store(f"s3://{s3_bucket}/run").sub("ledger")).read().num_rows == 3
    store.put_bytes("results.parquet", b"x")
    with pytest.raises(LedgerError, match="results.parquet"):
        ledger.read()


def test_racing_commits_of_one_round_on_s3_leave_one_file(s3_bucket):
    """Two workers commit the same round at once (a retried pipeline step): one write wins, the
    other sees the same trial ids and returns; a worker with other trials is refused."""
    import threading

    uri = f"s3://{s3_bucket}/race/ledger"
    ledgers = [Ledger(uri) for _ in range(4)]
    errors: list[Exception] = []
    barrier = threading.Barrier(len(ledgers))

    def commit(ledger, rows):
        barrier.wait()
        try:
            ledger.append_round(7, rows)
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            errors.append(exc)

    rows = [_rows(7, 2), _rows(7, 2), _rows(7, 2), _rows(7, 2, first=5)]
    threads = [threading.Thread(target=commit, args=(ledger, r)) for ledger, r in zip(ledgers, rows, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = sorted(Ledger(uri).read().column("trial_id").to_pylist())
    assert ids in (["s/000007/000", "s/000007/001"], ["s/000007/005", "s/000007/006"])
    assert len(errors) in (1, 3) and all(isinstance(e, LedgerError) for e in errors)


def test_checkpoint_on_s3_round_trips_and_refuses_tampering(saved, s3_bucket):
    import boto3

    _, payload, _ = saved
    uri = f"s3://{s3_bucket}/ckpt/checkpoint.pt"
    save_checkpoint(uri, payload)
    assert load_checkpoint(uri, space=TAML_TEXT, tasks=["a", "b"])["step"] == 2
    client = boto3.client("s3")
    data = bytearray(client.get_object(Bucket=s3_bucket, Key="ckpt/checkpoint.pt")["Body"].read())
    data[-10] ^= 0xFF
    client.put_object(Bucket=s3_bucket, Key="ckpt/checkpoint.pt", Body=bytes(data))
    with pytest.raises(CheckpointError, match=f"{uri} fails its checksum"):
        load_checkpoint(uri)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(f"s3://{s3_bucket}/ckpt/other.pt")

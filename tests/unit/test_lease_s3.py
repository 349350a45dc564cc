"""The search lease on S3 (moto's real HTTP endpoint): a conditional PUT decides between two
runners, the holder is named, the heartbeat moves the expiry, an expired lease is taken over."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401
from transfer_automl.errors import ConfigError
from transfer_automl.study import SearchDir
from transfer_automl.study.lease import LEASE_NAME, Lease


def _held(bucket: str, key: str) -> dict:
    return json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test_a_second_runner_is_refused_naming_the_holder_and_the_lease_is_given_back(s3_bucket):
    uri = f"s3://{s3_bucket}/searches/a"
    with Lease(SearchDir(uri), ttl_s=30) as first:
        held = _held(s3_bucket, f"searches/a/{LEASE_NAME}")
        assert (held["host"], held["pid"]) == (first.holder["host"], first.holder["pid"])
        second = Lease(SearchDir(uri), ttl_s=30)
        second.holder = {"host": "elsewhere", "pid": 7}  # another machine's runner
        with pytest.raises(ConfigError, match=f"being run by pid {first.holder['pid']} on {first.holder['host']}"):
            second.acquire()
        assert _held(s3_bucket, f"searches/a/{LEASE_NAME}")["pid"] == first.holder["pid"]  # untouched
    listed = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="searches/a/").get("Contents", [])
    assert [o["Key"] for o in listed] == []  # released
    with Lease(SearchDir(uri), ttl_s=30):  # and free to take again
        pass


def test_the_heartbeat_moves_the_expiry_and_an_expired_lease_is_taken_over(s3_bucket):
    uri = f"s3://{s3_bucket}/searches/b"
    key = f"searches/b/{LEASE_NAME}"
    with Lease(SearchDir(uri), ttl_s=0.6):
        first = _held(s3_bucket, key)["expires_at"]
        time.sleep(0.5)  # a beat every ttl/3
        assert _held(s3_bucket, key)["expires_at"] > first
    # A holder on another host that died: its lease expired a second ago.
    body = json.dumps({"host": "elsewhere", "pid": 1, "expires_at": time.time() - 1}).encode()
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=key, Body=body)
    with Lease(SearchDir(uri), ttl_s=30) as taker:
        assert _held(s3_bucket, key)["host"] == taker.holder["host"]
    # The same holder, alive on another host: refused.
    body = json.dumps({"host": "elsewhere", "pid": 1, "expires_at": time.time() + 60}).encode()
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=key, Body=body)
    with pytest.raises(ConfigError, match="pid 1 on elsewhere"):
        Lease(SearchDir(uri), ttl_s=30).acquire()

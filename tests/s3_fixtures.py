"""A real S3 HTTP endpoint for tests: moto's threaded server on 127.0.0.1 and a fresh bucket.

Import the fixtures into a test module (`from s3_fixtures import moto_server, s3_bucket, s3_env`).
The AWS environment is pointed at the server with dummy credentials for the duration of each
test (monkeypatch), and isolated from any profile or config file of the user running the tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

TEST_ACCESS_KEY = "taml-test-access-key-id"
TEST_SECRET_KEY = "taml-test-secret-do-not-print"
TEST_REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """Start moto's S3 server on a free local port once per session; yields its endpoint url."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> str:
    """Point the standard AWS environment at the moto server (restored after the test)."""
    nowhere = str(tmp_path_factory.getbasetemp() / "no-aws-config")
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_MAX_ATTEMPTS",
                "AWS_CA_BUNDLE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", nowhere)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", nowhere)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    return moto_server


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A fresh, empty bucket on the moto server; its name."""
    import boto3

    name = f"taml-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name

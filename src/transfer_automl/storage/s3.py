"""S3 (and S3-compatible: MinIO, Ceph, moto) artifact store; the only module that imports boto3.

Endpoint, region and credentials come from the standard AWS environment and config files only
(`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_REGION` / `AWS_DEFAULT_REGION`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_PROFILE`, ...), never from
code or pipeline parameters. pyarrow's `S3FileSystem` (used to read Parquet) is configured from
the very endpoint, region and credentials that boto3 resolved, so both clients see one store.

Atomicity: S3 makes an object visible only when its PUT (or CompleteMultipartUpload) succeeds,
so a failed write leaves the old object; a failed managed multipart upload is aborted by boto3.
`if_absent` sends `If-None-Match: *` on the PUT or on CompleteMultipartUpload, so of two racing
writers exactly one wins (S3 and moto >= 5.x answer 412 PreconditionFailed to the other).
Retries use botocore's "standard" mode (exponential backoff with full jitter on throttling,
5xx answers, dropped connections and timeouts); `max_attempts` counts every try, the first
included (default: `AWS_MAX_ATTEMPTS` or 5); pyarrow's reader gets the same standard strategy.
A request that gets no answer within `timeout_s` (default: `TAML_S3_TIMEOUT_S` or 60) is retried
like any transient error. When the retries are spent, the operation raises StorageError naming
the object, and nothing already committed is touched.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from transfer_automl.errors import StorageError
from transfer_automl.storage.base import ArtifactStore, check_key

if TYPE_CHECKING:
    import pyarrow.fs as pafs

MiB = 1024 * 1024
_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
_MISSING = {"404", "NoSuchKey", "NotFound"}
_EXISTS = {"412", "PreconditionFailed", "ConditionalRequestConflict"}


def _scrub(text: str) -> str:
    """Remove credential values from a message, in case a library echoed one."""
    for var in _SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


_SESSIONS: dict[tuple[tuple[str, str], ...], boto3.session.Session] = {}
_SESSION_LOCK = threading.Lock()


def _shared_session() -> boto3.session.Session:
    """One boto3 session per AWS environment and process.

    A new session loads the S3 service model again (0.2 to 0.6 s); every step of a pipeline
    opens several stores. The key is the AWS_* environment, so a changed endpoint, profile or
    set of credentials (tests, a second account) gets its own session."""
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    with _SESSION_LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = boto3.session.Session()
        return _SESSIONS[key]


def _timeout(value: float | None) -> float:
    if value is None:
        raw = os.environ.get("TAML_S3_TIMEOUT_S", "60")
        try:
            value = float(raw)
        except ValueError:
            raise StorageError(f"TAML_S3_TIMEOUT_S={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise StorageError(f"S3 timeout must be a positive number of seconds, got {value}")
    return value


def _file_sha256(path: str | os.PathLike[str]) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def _add_if_none_match(params: dict[str, Any], **_: Any) -> None:
    params["IfNoneMatch"] = "*"


class S3Store(ArtifactStore):
    """Artifacts under `s3://bucket/prefix`.

    Settable per instance: `page_size` (keys per ListObjectsV2 request), `multipart_threshold`
    and `multipart_chunksize` (bytes; S3's minimum part is 5 MiB), `max_attempts` (constructor).
    """

    multipart_threshold: int = 64 * MiB
    multipart_chunksize: int = 16 * MiB

    def __init__(self, uri: str, max_attempts: int | None = None, timeout_s: float | None = None):
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StorageError(f"store uri {uri!r} is not of the form s3://bucket[/prefix]")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if self.prefix:
            check_key(self.prefix)
        super().__init__(f"s3://{self.bucket}/{self.prefix}".rstrip("/"))
        if max_attempts is None:
            raw = os.environ.get("AWS_MAX_ATTEMPTS", "5")
            try:
                max_attempts = int(raw)
            except ValueError:
                raise StorageError(f"AWS_MAX_ATTEMPTS={raw!r} is not an integer") from None
        if max_attempts < 1:
            raise StorageError(f"max_attempts must be >= 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self.timeout_s = _timeout(timeout_s)
        self._session: boto3.session.Session | None = None
        self._client_cache: Any = None
        self._arrow_fs: pafs.S3FileSystem | None = None

    # -- clients -----------------------------------------------------------------------------
    def _new_client(self) -> Any:
        if self._session is None:
            self._session = _shared_session()
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or self._session.region_name
        # total_max_attempts counts the first try, like AWS_MAX_ATTEMPTS ("max_attempts" would not).
        config = Config(retries={"mode": "standard", "total_max_attempts": self.max_attempts},
                        connect_timeout=self.timeout_s, read_timeout=self.timeout_s)
        with _SESSION_LOCK:  # creating clients from one session is not thread-safe
            return self._session.client("s3", region_name=region, config=config)

    @property
    def _client(self) -> Any:
        if self._client_cache is None:
            self._client_cache = self._new_client()
        return self._client_cache

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _is_conflict(exc: Exception) -> bool:
        """A 412 to a conditional write: the key exists."""
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            return code in _EXISTS or status == "412"
        return "PreconditionFailed" in str(exc) or "(412)" in str(exc)

    def _holds(self, key: str, sha256: bytes) -> bool:
        """Whether `key` exists with exactly this content.

        Over HTTP a conditional PUT can land while its answer is lost (a dropped connection); the
        client's retry then gets 412 from its own object. Identical bytes make that retry a
        success, so `if_absent` writes stay safe to retry; different bytes are a real conflict."""
        try:
            return hashlib.sha256(self.get_bytes(key)).digest() == sha256
        except StorageError:
            return False

    @staticmethod
    def _is_missing(exc: ClientError) -> bool:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return code in _MISSING or (status == "404" and code != "NoSuchBucket")

    def _error(self, exc: Exception, key: str, action: str) -> StorageError:
        where = f"s3://{self.bucket}/{self._full(key) if key else self.prefix}"
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if self._is_missing(exc):
                return StorageError(f"{where} does not exist")
            if code in _EXISTS or status == "412":
                return StorageError(f"{where} already exists; refusing to overwrite it (if_absent)")
            return StorageError(_scrub(f"cannot {action} {where}: {code or status} {err.get('Message', '')}".rstrip()))
        return StorageError(_scrub(f"cannot {action} {where}: {type(exc).__name__}: {exc}"))

    def _transfer_config(self) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            use_threads=True,
        )

    # -- bytes -------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._full(key), Body=bytes(data), **extra)
        except (ClientError, BotoCoreError) as exc:
            if if_absent and self._is_conflict(exc) and self._holds(key, hashlib.sha256(bytes(data)).digest()):
                return  # our own earlier attempt landed and only its answer was lost
            raise self._error(exc, key, "write") from None

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key, "read") from None

    def size(self, key: str) -> int:
        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=self._full(key))["ContentLength"])
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key, "check") from None

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if self._is_missing(exc):
                return False
            raise self._error(exc, key, "check") from None
        except BotoCoreError as exc:
            raise self._error(exc, key, "check") from None
        return True

    def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, prefix=True)
        root = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": root + prefix, "MaxKeys": self.page_size}
        try:
            while True:
                page = self._client.list_objects_v2(**kwargs)
                keys.extend(obj["Key"][len(root):] for obj in page.get("Contents", []))
                if not page.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(self._error(exc, "", "list").args[0] + f" (prefix {prefix!r})") from None
        return sorted(keys)

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key, "delete") from None

    # -- large files -------------------------------------------------------------------------
    def put_file(self, key: str, local_path: str | os.PathLike[str], if_absent: bool = False) -> None:
        if not Path(local_path).is_file():
            raise StorageError(f"cannot upload {local_path} to {self.join(key)}: no such local file")
        client = self._client
        if if_absent:
            # boto3's managed transfer does not pass IfNoneMatch through, so a private client adds
            # it to the request that makes the object visible (PutObject or CompleteMultipartUpload).
            client = self._new_client()
            for op in ("PutObject", "CompleteMultipartUpload"):
                client.meta.events.register(f"before-parameter-build.s3.{op}", _add_if_none_match)
        try:
            client.upload_file(str(local_path), self.bucket, self._full(key), Config=self._transfer_config())
        except Exception as exc:  # s3transfer wraps failures (S3UploadFailedError)
            cause = exc if isinstance(exc, ClientError | BotoCoreError) else (exc.__cause__ or exc.__context__)
            conflict = self._is_conflict(exc) or (cause is not None and self._is_conflict(cause))
            if if_absent and conflict and self._holds(key, _file_sha256(local_path)):
                return  # our own earlier attempt landed and only its answer was lost (see _holds)
            if conflict:
                raise StorageError(f"{self.join(key)} already exists; refusing to overwrite it (if_absent)") from None
            if isinstance(cause, ClientError | BotoCoreError):
                raise self._error(cause, key, "upload") from None
            raise self._error(exc, key, "upload") from None

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> None:
        Path(local_path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # s3transfer downloads to a temporary name beside local_path and renames it.
            self._client.download_file(self.bucket, self._full(key), str(local_path), Config=self._transfer_config())
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key, "download") from None

    # -- pyarrow -----------------------------------------------------------------------------
    def arrow_filesystem(self) -> pafs.S3FileSystem:
        """pyarrow's S3FileSystem with the endpoint, region and credentials boto3 resolved."""
        if self._arrow_fs is None:
            import pyarrow.fs as pafs

            client = self._client
            kwargs: dict[str, Any] = {
                "region": client.meta.region_name,
                "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=self.max_attempts),
                "connect_timeout": self.timeout_s,
                "request_timeout": self.timeout_s,
            }
            if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
                endpoint = urlparse(client.meta.endpoint_url)
                kwargs["endpoint_override"] = endpoint.netloc + endpoint.path.rstrip("/")
                kwargs["scheme"] = endpoint.scheme or "https"
            credentials = self._session.get_credentials() if self._session else None
            # Static credentials (environment, shared file) are handed over; refreshable ones
            # (web identity / IRSA, instance or container roles) are left to pyarrow's own AWS
            # default chain, which reads the same environment and refreshes them itself.
            if credentials is not None and not isinstance(credentials, RefreshableCredentials):
                frozen = credentials.get_frozen_credentials()
                kwargs.update(access_key=frozen.access_key, secret_key=frozen.secret_key)
                if frozen.token:
                    kwargs["session_token"] = frozen.token
            self._arrow_fs = pafs.S3FileSystem(**kwargs)
        return self._arrow_fs

    def arrow_location(self, key: str) -> tuple[pafs.FileSystem, str]:
        check_key(key, prefix=True)
        path = f"{self.prefix}/{key}" if self.prefix else key
        return self.arrow_filesystem(), f"{self.bucket}/{path}".rstrip("/")

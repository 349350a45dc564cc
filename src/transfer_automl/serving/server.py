"""`mlflow models serve` on a local port, started and stopped from Python (the e2e test and
`make bench-serving` talk to the real server, as a user or KServe's MLServer runtime would)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from transfer_automl.errors import TamlError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def scoring_server(model_uri: str, log_path: str | Path, *, tracking_uri: str | None = None, workers: int = 1,
                   start_timeout_s: float = 120.0) -> Iterator[str]:
    """`mlflow models serve -m MODEL --env-manager local` on 127.0.0.1; yields its base url once
    /ping answers, stops it (its whole process group) afterwards."""
    port = free_port()
    env = dict(os.environ)
    # MLflow starts `uvicorn` by name: this Python's scripts first on the PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    log = open(log_path, "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise TamlError(f"mlflow models serve -m {model_uri} did not start (log {log_path}): "
                                f"{Path(log_path).read_text(errors='replace')[-1500:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def invoke(url: str, body: bytes, content_type: str, timeout: float = 60.0) -> bytes:
    """POST `body` to `url`/invocations; the response body (an HTTP error raises, with its body)."""
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()

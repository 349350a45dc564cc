"""A fault-injecting HTTP proxy on 127.0.0.1 in front of an S3 endpoint (the moto server).

Clients are pointed at the proxy (`AWS_ENDPOINT_URL`); each request is forwarded to the
upstream endpoint unless the proxy draws a fault for it, with probability `fault_rate`:

* ``slowdown``: 503 SlowDown (S3's throttling answer), the request never reaches upstream;
* ``internal``: 500 InternalError, never reaches upstream;
* ``drop_before``: the connection is closed without an answer, the request never reaches upstream;
* ``drop_after``: the request IS applied upstream, then the connection is closed before the answer
  (the nasty case: a retried PUT finds its own object, a retried conditional PUT gets 412);
* ``stall``: no answer for `stall_s` seconds, then the connection is closed (a client read timeout).

Draws come from a seeded generator, so a failing run can be replayed. `counts` records what
happened to every request; `fault_rate=1.0` makes every request fail (a persistent outage).
`script` is a list of faults (None: forward) used, in order, before any draw.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

FAULTS = ("slowdown", "internal", "drop_before", "drop_after", "stall")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """Clients drop connections here on purpose (our faults, their timeouts): not worth a traceback."""


class FaultProxy:
    def __init__(self, upstream: str, fault_rate: float = 0.2, faults: tuple[str, ...] = FAULTS,
                 seed: int = 0, stall_s: float = 3.0):
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}")
        parsed = urlparse(upstream)
        self.upstream_host, self.upstream_port = parsed.hostname, parsed.port
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.stall_s = stall_s
        self.counts: Counter[str] = Counter()
        self.script: list[str | None] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def injected(self) -> int:
        return sum(self.counts[f] for f in FAULTS)

    def _draw(self) -> str | None:
        with self._lock:
            self.counts["requests"] += 1
            if self.script:
                fault = self.script.pop(0)
            elif self._random.random() < self.fault_rate:
                fault = self._random.choice(self.faults)
            else:
                fault = None
            if fault is None:
                self.counts["forwarded"] += 1
                return None
            self.counts[fault] += 1
            return fault

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _drop(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def _error(self, status: int, code: str) -> None:
                body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                        f"<Message>injected by the test proxy</Message></Error>").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self._body()  # read it whatever happens, so the connection stays in sync
                fault = proxy._draw()
                if fault == "slowdown":
                    return self._error(503, "SlowDown")
                if fault == "internal":
                    return self._error(500, "InternalError")
                if fault == "drop_before":
                    return self._drop()
                if fault == "stall":
                    time.sleep(proxy.stall_s)
                    return self._drop()
                status, reason, headers, payload = self._forward(body)
                if fault == "drop_after":
                    return self._drop()
                self.send_response(status, reason)
                head = self.command == "HEAD"  # its Content-Length is the object's, not the (empty) body's
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP and (head or name.lower() != "content-length"):
                        self.send_header(name, value)
                if not head:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    return response.status, response.reason, response.getheaders(), payload
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler

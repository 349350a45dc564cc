"""A tracker that never stops a search: bounded retries, one warning per outage, catch-up later.

The ledger in the artifact store is the record of trials; the tracker is a view of it. When the
wrapped tracker (MLflow) fails, a call is retried a few times with a short exponential backoff
with jitter; if it still fails, one line goes to stderr (once per outage, not per call) and the
search carries on. While the tracker is down it is probed again at most every `cooldown_s`
seconds (doubling up to `max_cooldown_s`), so a server that does not answer costs one timeout per
probe, not one per call. Trials and artifacts told in the meantime are kept and logged once a
probe succeeds; controller metrics of those steps are dropped. Whatever is still missing at the
end is replayed from the ledger with `taml runs sync <out>`.

Settable through the constructor or `from_env`: TAML_TRACKING_ATTEMPTS (3), TAML_TRACKING_BACKOFF_S
(0.5), TAML_TRACKING_COOLDOWN_S (30).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from transfer_automl.errors import ConfigError
from transfer_automl.tracking.base import TaskData, Tracker


class ResilientTracker(Tracker):
    def __init__(self, inner: Tracker, attempts: int = 3, backoff_s: float = 0.5, cooldown_s: float = 30.0,
                 max_cooldown_s: float = 600.0, hint: str = "", stream: TextIO | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        if attempts < 1:
            raise ConfigError(f"tracking attempts must be >= 1, got {attempts}")
        if backoff_s < 0 or cooldown_s < 0:
            raise ConfigError(f"tracking backoff_s and cooldown_s must be >= 0, got {backoff_s}, {cooldown_s}")
        self.inner = inner
        self.location = inner.location
        self.attempts = attempts  # tries per call while the tracker works (1 per probe while it is down)
        self.backoff_s = backoff_s  # first retry waits backoff_s * (1..2), then doubles
        self.cooldown_s = cooldown_s  # while down: seconds between probes, doubling up to max_cooldown_s
        self.max_cooldown_s = max(max_cooldown_s, cooldown_s)
        self.hint = hint  # appended to the warning, e.g. how to replay the missing runs
        self.stream = stream
        self._sleep, self._clock = sleep, clock
        self._start_args: tuple[str, dict[str, Any], dict[str, str]] | None = None
        self._started = False
        self._down = False  # in a failure streak
        self._next_probe = 0.0
        self._cooldown = cooldown_s
        self.pending: list[Callable[[], None]] = []  # trials and artifacts to log once the tracker is back
        self.warnings = 0  # failure streaks reported (one line each)

    @classmethod
    def from_env(cls, inner: Tracker, **kwargs: Any) -> ResilientTracker:
        def number(name: str, default: float, cast: Callable[[str], float]) -> float:
            text = os.environ.get(name)
            if not text:
                return default
            try:
                return cast(text)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {text!r}") from None

        return cls(inner, attempts=int(number("TAML_TRACKING_ATTEMPTS", 3, int)),
                   backoff_s=number("TAML_TRACKING_BACKOFF_S", 0.5, float),
                   cooldown_s=number("TAML_TRACKING_COOLDOWN_S", 30.0, float), **kwargs)

    @property
    def down(self) -> bool:
        """Whether the tracker failed on its last call (and has not been reached since)."""
        return self._down

    # -- the Tracker interface ----------------------------------------------------------------

    def start(self, search_id: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        self._start_args = (search_id, dict(params), dict(tags))
        self._call("start", lambda: None)

    def log_controller(self, step: int, metrics: dict[str, float]) -> None:
        self._call("log_controller", lambda: self.inner.log_controller(step, metrics))

    def log_datasets(self, datasets: Sequence[TaskData]) -> None:
        self._call("log_datasets", lambda: self.inner.log_datasets(datasets), keep=True)

    def log_trial(self, row: dict[str, Any], config: dict[str, Any]) -> None:
        self._call("log_trial", lambda: self.inner.log_trial(row, config), keep=True)

    def log_artifact(self, path: str | Path) -> None:
        self._call("log_artifact", lambda: self.inner.log_artifact(path), keep=True)

    def finish(self, summary: dict[str, float], status: str = "FINISHED") -> None:
        self._call("finish", lambda: self.inner.finish(summary, status), probe_now=True)

    # -- retries ------------------------------------------------------------------------------

    def _call(self, name: str, action: Callable[[], None], keep: bool = False, probe_now: bool = False) -> bool:
        """Run `action` (after a start that has not succeeded yet); True when it went through.
        `keep`: while the tracker is down, remember the action for when it is back."""
        if self._down and not probe_now and self._clock() < self._next_probe:
            if keep:
                self.pending.append(action)
            return False
        was_down = self._down
        error = self._try(action, 1 if self._down else self.attempts)
        if error is not None:
            if keep:
                self.pending.append(action)
            self._failed(name, error)
            return False
        if was_down:
            self._recovered()
        return True

    def _try(self, action: Callable[[], None], attempts: int) -> Exception | None:
        error: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.backoff_s * 2 ** (attempt - 1) * (1 + random.random()))
            try:
                if self._start_args is not None and not self._started:
                    self.inner.start(*self._start_args)
                    self._started = True
                action()
                return None
            except ConfigError:  # not an outage (a search id taken in a shared store): retrying cannot help
                raise
            except Exception as exc:  # any tracker failure: the ledger is the record
                error = exc
        return error

    def _failed(self, name: str, error: Exception) -> None:
        if self._down:
            self._cooldown = min(self._cooldown * 2, self.max_cooldown_s)
        else:
            self._down, self._cooldown = True, self.cooldown_s
            self.warnings += 1
            message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            print(f"taml: warning: tracker {self.location} failed ({name}: {message}); the search goes on and "
                  f"trials stay in the ledger{'; ' + self.hint if self.hint else ''}",
                  file=self.stream or sys.stderr, flush=True)
        self._next_probe = self._clock() + self._cooldown

    def _recovered(self) -> None:
        self._down, self._cooldown = False, self.cooldown_s
        while self.pending:
            action = self.pending[0]
            error = self._try(action, 1)
            if error is not None:
                self._failed("catch-up", error)
                return
            self.pending.pop(0)
        print(f"taml: tracker {self.location} is back; missed trials logged", file=self.stream or sys.stderr, flush=True)

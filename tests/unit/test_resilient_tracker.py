"""ResilientTracker: bounded retries, one warning per outage, catch-up when the tracker is back."""

from __future__ import annotations

import io

import pytest

from transfer_automl.errors import ConfigError
from transfer_automl.tracking import MemoryTracker
from transfer_automl.tracking.resilient import ResilientTracker


class FlakyTracker(MemoryTracker):
    """A MemoryTracker whose every call fails while `down`; counts the calls it got."""

    location = "flaky://"

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def _gate(self) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("connection refused")

    def start(self, search_id, params, tags):
        self._gate()
        super().start(search_id, params, tags)

    def log_controller(self, step, metrics):
        self._gate()
        super().log_controller(step, metrics)

    def log_trial(self, row, config):
        self._gate()
        super().log_trial(row, config)

    def log_artifact(self, path):
        self._gate()
        super().log_artifact(path)

    def finish(self, summary, status="FINISHED"):
        self._gate()
        super().finish(summary, status)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _tracker(inner, clock, **kwargs):
    stream = io.StringIO()
    return ResilientTracker(inner, attempts=3, backoff_s=0.1, cooldown_s=10, stream=stream, sleep=clock.sleep,
                            clock=lambda: clock.now, **kwargs), stream


def test_a_tracker_that_is_down_from_the_start_never_stops_the_search_and_catches_up():
    inner, clock = FlakyTracker(), Clock()
    inner.down = True
    tracker, stream = _tracker(inner, clock)
    assert not tracker.down
    tracker.start("s", {"a": 1}, {})  # 3 attempts, 2 backoffs with jitter in [0.1, 0.2] and [0.2, 0.4]
    assert inner.calls == 3 and len(clock.slept) == 2 and tracker.down  # (champions are then not registered)
    assert 0.1 <= clock.slept[0] <= 0.2 and 0.2 <= clock.slept[1] <= 0.4
    for i in range(5):  # within the cooldown: no call reaches the tracker, trials are kept
        tracker.log_trial({"trial_id": f"t{i}"}, {})
        tracker.log_controller(i, {"controller/loss": 1.0})
    assert inner.calls == 3 and len(tracker.pending) == 5
    clock.now += 11  # one probe, a single attempt, fails: the cooldown doubles
    tracker.log_trial({"trial_id": "t5"}, {})
    assert inner.calls == 4 and len(tracker.pending) == 6
    clock.now += 11
    tracker.log_trial({"trial_id": "t6"}, {})
    assert inner.calls == 4  # still within the doubled cooldown
    warnings = stream.getvalue().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("taml: warning: tracker flaky:// failed (start")
    inner.down = False
    clock.now += 30
    tracker.log_trial({"trial_id": "t7"}, {})  # back: starts the search, then logs every kept trial
    assert inner.search_id == "s"
    assert sorted(t["trial_id"] for t in inner.trials) == [f"t{i}" for i in range(8)]
    assert tracker.pending == [] and "is back" in stream.getvalue() and not tracker.down
    tracker.finish({"x": 1.0})
    assert inner.status == "FINISHED"


def test_each_outage_warns_once_and_finish_always_probes():
    inner, clock = FlakyTracker(), Clock()
    tracker, stream = _tracker(inner, clock)
    tracker.start("s", {}, {})
    tracker.log_trial({"trial_id": "a"}, {})
    inner.down = True
    for i in range(3):
        tracker.log_controller(i, {"m": 1.0})
    assert stream.getvalue().count("warning") == 1
    inner.down = False
    clock.now += 100
    tracker.log_controller(3, {"m": 1.0})
    inner.down = True
    tracker.log_artifact("ckpt.pt")
    assert stream.getvalue().count("warning") == 2  # a second outage, a second line
    inner.down = False
    tracker.finish({}, status="KILLED")  # within the cooldown, but finish probes anyway
    assert inner.status == "KILLED" and inner.artifacts == ["ckpt.pt"]


def test_a_working_tracker_is_called_once_per_call():
    inner, clock = FlakyTracker(), Clock()
    tracker, stream = _tracker(inner, clock)
    tracker.start("s", {}, {})
    tracker.log_trial({"trial_id": "a"}, {})
    tracker.log_controller(0, {})
    assert inner.calls == 3 and clock.slept == [] and stream.getvalue() == ""


def test_settings_are_checked_and_read_from_the_environment(monkeypatch):
    with pytest.raises(ConfigError, match="attempts"):
        ResilientTracker(MemoryTracker(), attempts=0)
    monkeypatch.setenv("TAML_TRACKING_ATTEMPTS", "5")
    monkeypatch.setenv("TAML_TRACKING_BACKOFF_S", "0.01")
    tracker = ResilientTracker.from_env(MemoryTracker())
    assert tracker.attempts == 5 and tracker.backoff_s == 0.01 and tracker.cooldown_s == 30
    monkeypatch.setenv("TAML_TRACKING_COOLDOWN_S", "soon")
    with pytest.raises(ConfigError, match="TAML_TRACKING_COOLDOWN_S"):
        ResilientTracker.from_env(MemoryTracker())

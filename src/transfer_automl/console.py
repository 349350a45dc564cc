"""Terminal output of the `taml` command: a search's progress (stderr) and summary tables (stdout).

Progress goes to stderr so `--json` keeps stdout to one JSON document; tables are printed at a
width that fits them, so piped output is never wrapped mid-cell.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

# Decisions that set what a child costs: which input module, whether it is fine-tuned, how long it
# trains (taml-text, mnms-text); children of one key take about the same time.
COST_DECISIONS = ("input_module", "embedding_table", "fine_tune", "trainable", "training_samples", "iterations")


def cost_key(config: Mapping[str, Any]) -> tuple:
    """The (module, fine-tuning, budget) of a configuration: the ETA averages children per key."""
    return tuple((name, config[name]) for name in COST_DECISIONS if name in config)


def short_config(config: Mapping[str, Any], width: int = 80) -> str:
    """A configuration in a few words: `glove-6b-50d frozen 2x64 swish layer drop0.1 deep0.03
    wide0.3 10k samples`; other spaces `name=value` pairs; cut to `width` characters."""
    c = dict(config)
    if {"input_module", "hidden_layers", "hidden_size", "training_samples"} <= set(c):
        parts = [str(c["input_module"]), "tuned" if c.get("fine_tune") else "frozen"]
        deep = c.get("deep_reg") != "disable_deep_tower"
        if deep:
            parts += [f"{c['hidden_layers']}x{c['hidden_size']}", str(c.get("activation", "")),
                      str(c.get("normalization", "")), f"drop{c.get('dropout', 0)}", f"deep{c.get('deep_lr')}"]
        else:
            parts.append("no deep")
        tfidf = " tfidf" if c.get("wide_features") == "tfidf" else ""
        parts.append(f"wide{c.get('wide_lr')}{tfidf}" if c.get("wide_reg") != "disable_wide_tower" else "no wide")
        parts.append(f"{_count(c['training_samples'])} samples")
        text = " ".join(p for p in parts if p)
    else:
        text = " ".join(f"{k}={v}" for k, v in c.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def _count(n: Any) -> str:
    n = int(n)
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else \
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class EtaEstimate:
    """The time a search has left, from the children it measured.

    A child's time is the mean of the measured children of its cost key (module, fine-tuning,
    budget: `cost_key`), else of all measured children. Trials not sampled yet have no
    configuration, so each counts as the mean of all measured children (what the sampled mix has
    cost so far). Everything around the children (controller updates, ledger commits, tracking)
    is scaled in by the ratio of the wall time since the first measured child to the children's
    own time. None until a child has been measured."""

    def __init__(self) -> None:
        self.by_key: dict[tuple, list[float]] = {}
        self.all: list[float] = []
        self.first_start: float | None = None
        self.last_end: float | None = None

    def add(self, key: tuple, started: float, ended: float) -> None:
        self.by_key.setdefault(key, []).append(ended - started)
        self.all.append(ended - started)
        self.first_start = started if self.first_start is None else min(self.first_start, started)
        self.last_end = ended if self.last_end is None else max(self.last_end, ended)

    def child(self, key: tuple | None) -> float | None:
        times = self.by_key.get(key) if key is not None else None
        times = times or self.all
        return sum(times) / len(times) if times else None

    def overhead(self) -> float:
        """Wall time per second of child time (>= 1)."""
        spent = sum(self.all)
        if self.first_start is None or spent <= 0:
            return 1.0
        return max(1.0, (self.last_end - self.first_start) / spent)

    def remaining(self, unsampled: int, current_key: tuple | None = None, current_elapsed: float = 0.0) -> float | None:
        """Seconds left: the child now training (its estimate less its elapsed time) and
        `unsampled` more trials."""
        mean = self.child(None)
        if mean is None:
            return None
        left = unsampled * mean
        if current_key is not None:
            left += max(0.0, (self.child(current_key) or mean) - current_elapsed)
        return left * self.overhead()


class SearchProgress:
    """What a running search shows on stderr.

    On a terminal: a bar of finished trials, elapsed time and an ETA labelled as an estimate
    (`EtaEstimate`), and below it the trial now training (task, short configuration, its elapsed
    time), refreshed twice a second, and the best validation accuracy so far per task. Elsewhere (a
    log file, a pipe): one line per finished trial, one per finished round of several trials with
    the best so far per task. After the last trial, `phase` announces what still
    runs (refit, registration, ...). Disabled, it does nothing.

    The loop's surface: `trial_started(task, config)`, `trial_finished(task, config, status,
    val_accuracy)`, `round_finished(step, best_val)`, `phase(name, detail)`, `close()`."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True, stream: Any = None,
                 terminal: bool | None = None, clock: Any = None, best: Mapping[str, float] | None = None):
        import time

        self.total, self.done = total, done
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.clock = clock or time.monotonic
        self.started = self.clock()
        self.eta = EtaEstimate()
        self.current: tuple[str, dict, float] | None = None  # task, config, started
        self.best: dict[str, float] = dict(best or {})  # task -> best val accuracy so far (a resumed search's too)
        self._live = None
        if enabled and self.terminal:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self, console=Console(file=self.stream), refresh_per_second=2, transient=False)
            self._live.start()

    # -- what the loop tells ---------------------------------------------------------------------

    def trial_started(self, task: str, config: Mapping[str, Any]) -> None:
        self.current = (task, dict(config), self.clock())

    def trial_finished(self, task: str, config: Mapping[str, Any], status: str, val_accuracy: float,
                       measured: bool = True) -> None:
        """A trial is done; `measured` False for one replayed from its record (no time spent)."""
        now = self.clock()
        started = self.current[2] if self.current is not None else now
        took = now - started
        if measured:
            self.eta.add(cost_key(config), started, now)
        self.current = None
        self.done += 1
        if status == "ok" and val_accuracy > self.best.get(task, float("-inf")):
            self.best[task] = val_accuracy
        if self.enabled and not self.terminal:
            result = f"val {val_accuracy:.4f}" if status == "ok" else status
            self._line(f"trial {self.done}/{self.total} {task}: {result} in {took:.1f}s ({short_config(config)}) · "
                       f"{self._times()}")

    def round_finished(self, step: int, trials: int, best_val: float) -> None:
        if self.enabled and not self.terminal and trials > 1:
            self._line(f"round {step} done ({trials} trials, controller updated): best val of the round "
                       f"{best_val:.4f}" + (f" · {self.best_so_far()}" if self.best else ""))

    def phase(self, name: str, detail: str = "") -> None:
        """After the trials: the step now running (refit, registration, report) and what it does."""
        if not self.enabled:
            return
        self.current = None
        self.close()
        self._line(f"{name}: {detail}" if detail else name)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> SearchProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- rendering -------------------------------------------------------------------------------

    def _times(self) -> str:
        elapsed = f"{duration(self.clock() - self.started)} elapsed"
        left = self.remaining()
        if left is None:
            return f"{elapsed}, ETA after the first child"
        n = len(self.eta.all)
        return f"{elapsed}, ETA ~{duration(left)} (estimate from {n} child{'' if n == 1 else 'ren'})"

    def remaining(self) -> float | None:
        unsampled = max(0, self.total - self.done - (1 if self.current is not None else 0))
        if self.current is None:
            return self.eta.remaining(unsampled)
        task, config, started = self.current
        return self.eta.remaining(unsampled, cost_key(config), self.clock() - started)

    def status_lines(self) -> list[str]:
        """The two lines a terminal shows (what `__rich__` draws, testable without a terminal)."""
        width = 12
        filled = round(width * self.done / self.total) if self.total else width
        lines = [f"search {'━' * filled}{'╌' * (width - filled)} {self.done}/{self.total} trials · {self._times()}"]
        if self.current is not None:
            task, config, started = self.current
            lines.append(f"  training {task}: {short_config(config)} · {duration(self.clock() - started)}")
        if self.best:
            lines.append(f"  {self.best_so_far()}")
        return lines

    def best_so_far(self, shown: int = 6) -> str:
        """"best so far: mpqa 0.8100, sst2 0.7700, +3 more": the first `shown` tasks by name."""
        tasks = sorted(self.best)
        text = ", ".join(f"{t} {self.best[t]:.4f}" for t in tasks[:shown])
        return f"best so far: {text}" + (f", +{len(tasks) - shown} more" if len(tasks) > shown else "")

    def __rich__(self):
        from rich.text import Text

        return Text("\n".join(self.status_lines()))

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class Progress:
    """A rich progress bar of a countable total (rows of a batch prediction) with a small
    tqdm-like surface: `update(n)`, `set_postfix_str(text)`, `close()`. Disabled, it does nothing.
    A search shows `SearchProgress` instead."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, unit: str = "trial",
                 description: str = ""):
        self._bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit + "s"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[postfix]}"),
            console=Console(stderr=True), transient=False,
        )
        self._task = self._bar.add_task(description, total=total, completed=initial, postfix="")
        self._bar.start()

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def set_postfix_str(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, postfix=text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
                numeric: Sequence[bool] | None = None) -> None:
    """A rich table on stdout; numbers right-aligned (floats with 4 decimals)."""
    from rich.console import Console
    from rich.table import Table

    numeric = list(numeric) if numeric is not None else [False] * len(header)
    table = Table(title=title, title_justify="left", header_style="bold")
    for name, is_number in zip(header, numeric, strict=True):
        table.add_column(name, justify="right" if is_number else "left", overflow="fold")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    width = sum(max(len(str(h)), *(len(_cell(r[i])) for r in rows)) if rows else len(str(h))
                for i, h in enumerate(header)) + 3 * len(header) + 4
    console = Console(width=max(width, len(title or "") + 4), soft_wrap=False) if not sys.stdout.isatty() else Console()
    console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4f}"
    return str(value)


def print_json(document: Any) -> None:
    """One JSON document on stdout (NaN written as null, so any JSON reader accepts it)."""
    print(json.dumps(_clean(document), indent=2, sort_keys=False, default=str))


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value

"""Terminal output of the `taml` command: rich progress bars (stderr) and summary tables (stdout).

Progress goes to stderr so `--json` keeps stdout to one JSON document; tables are printed at a
width that fits them, so piped output is never wrapped mid-cell.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


class Progress:
    """A rich progress bar with the small tqdm-like surface the search loop uses:
    `update(n)`, `set_postfix_str(text)`, `close()`. Disabled, it does nothing."""

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

"""The report step: a search's HTML report (transfer_automl.report) written where the pipeline
wants its HTML artifact. What the `report` component calls."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def render_report(search_dir: str | Path, out_path: str | Path, compare: Sequence[str] = ()) -> str:
    """Write the report of the search in `search_dir` (beside the searches in `compare`) to `out_path`."""
    from transfer_automl.report import render_report as render

    return str(render(str(search_dir), str(out_path), compare=tuple(compare)))

"""The report step: a search's HTML report (transfer_automl.report) written where the pipeline
wants its HTML artifact, and logged to the search's controller run in MLflow. What the `report`
component and `taml report --mlflow` call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transfer_automl.errors import TamlError

REPORT_ARTIFACT = "report.html"


def render_report(search_dir: str | Path, out_path: str | Path, compare: Sequence[str] = ()) -> str:
    """Write the report of the search in `search_dir` (beside the searches in `compare`) to `out_path`."""
    from transfer_automl.report import render_report as render

    return str(render(str(search_dir), str(out_path), compare=tuple(compare)))


def report_step(search_dir: str | Path, out_path: str | Path) -> str:
    """The pipeline's report: rendered to `out_path`, and logged to MLflow when the run has it
    (MLFLOW_TRACKING_URI set, as Kubeflow's MLflow integration and our manifests do)."""
    import os

    written = render_report(search_dir, out_path)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        log_report(search_dir, written)
    return written


def log_report(search_dir: str | Path, report_path: str | Path, tracking_uri: str | None = None) -> str:
    """Log `report_path` as `report.html` into the search's controller run; returns the run id.

    The tracking store: `tracking_uri`, else MLFLOW_TRACKING_URI, else the search's default store
    (as `taml runs sync`; study/search_dir.py). The controller run is found by the search id, reopened, and closed
    again with the status it had, so a finished search stays FINISHED."""
    import shutil
    import tempfile

    from transfer_automl.study import SearchDir
    from transfer_automl.tracking.mlflow import MlflowTracker

    out = SearchDir.of(search_dir)
    if not out.has_checkpoint():
        raise TamlError(f"report: {out} holds no search ({out.checkpoint} not found); nothing to log it to")
    body = out.load_checkpoint()
    tracker = MlflowTracker(out.default_tracking_uri(), uri=tracking_uri)
    try:
        tracker.start(str(body["search_id"]), dict(body.get("search_settings", {})), out.tracking_tags())
        with tempfile.TemporaryDirectory(prefix="taml-report-") as tmp:
            named = Path(tmp) / REPORT_ARTIFACT  # the artifact keeps the file's name
            shutil.copyfile(report_path, named)
            tracker.log_artifact(named)
        tracker.finish({}, status=tracker.previous_status or "FINISHED")
    except Exception as exc:
        raise TamlError(f"report: logging to MLflow at {tracker.location} failed: {type(exc).__name__}: {exc}") from None
    return tracker.run_id

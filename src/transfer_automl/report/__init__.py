"""Search reports: the papers' figures drawn from a search's own ledger, checkpoint and distances.

    from transfer_automl.report import render_report
    render_report("runs/demo", "report.html", compare=["runs/demo-rs"])

`taml report runs/demo --compare runs/demo-rs --out report.html` does the same.
"""

from transfer_automl.report.data import ReportError, SearchData, find_searches, load_search
from transfer_automl.report.render import Report, build_report, render_report

__all__ = ["Report", "ReportError", "SearchData", "build_report", "find_searches", "load_search", "render_report"]

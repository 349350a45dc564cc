"""`taml report`: a self-contained HTML page with the papers' figures drawn from a search's own files."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from PIL import Image

from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401  (fixtures)
from transfer_automl.cli import main
from transfer_automl.errors import TamlError
from transfer_automl.report import ReportError, build_report, load_search, render_report
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchDir, SearchSettings
from transfer_automl.tracking import MemoryTracker
from transfer_automl.transfer.distances import DistanceMatrix

# MLflow stores, HTTP servers, whole searches: part of `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"


class _Page(HTMLParser):
    """The parts of the report the tests read: images, tables (by id), omitted-section notes, tags."""

    def __init__(self, html: str):
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.omitted: dict[str, str] = {}
        self.tags: set[str] = set()
        self._table = self._cell = self._omitted = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "p" and "data-omitted" in attrs:
            self._omitted = attrs["data-omitted"]
            self.omitted[self._omitted] = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "p":
            self._omitted = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._omitted is not None:
            self.omitted[self._omitted] += data


def _decoded_pngs(page: _Page) -> list[Image.Image]:
    images = []
    for img in page.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix), img["src"][:40]
        image = Image.open(io.BytesIO(base64.b64decode(img["src"][len(prefix):], validate=True)))
        image.load()  # decodes every pixel: a truncated PNG fails here
        assert image.format == "PNG" and image.width > 200 and image.height > 100
        images.append(image)
    return images


@pytest.fixture(scope="module")
def nb201(tmp_path_factory):
    """A real 40-trial NAS-Bench-201 search (REINFORCE), its random-search sibling, and a distance file."""
    if not (BENCHMARKS / "nasbench201").is_dir():
        pytest.skip("NAS-Bench-201 table not found")
    root = tmp_path_factory.mktemp("report")
    for method in ("reinforce", "rs"):
        run_search(SearchSettings(tasks=(), trials=40, out=str(root / method), method=method, benchmark="nasbench201",
                                  data_dir=str(BENCHMARKS), progress=False, search_id=f"nb-{method}"),
                   tracker=MemoryTracker())
    names = ["cifar10", "cifar100", "imagenet"]
    mean = np.array([[0.0, 0.3, 0.9], [0.2, 0.0, 0.5], [0.7, 0.4, 0.0]])
    DistanceMatrix(names, mean, mean / 10, repeats=2).write(root / "reinforce")
    return root


@pytest.fixture(scope="module")
def nb201_report(nb201) -> str:
    """The REINFORCE search's report beside its random-search sibling, rendered once for the module."""
    out = render_report(str(nb201 / "reinforce"), str(nb201 / "report.html"), compare=[str(nb201 / "rs")],
                        data_dir=str(BENCHMARKS))
    return out.read_text(encoding="utf-8")


def test_report_renders_every_figure_as_an_inline_png(nb201, nb201_report):
    html = nb201_report
    page = _Page(html)
    images = _decoded_pngs(page)
    alts = [img["alt"] for img in page.images]
    # curves, 6 sampled + 6 policy heatmaps (one per edge decision), evolution, similarity, distance
    assert len(images) == 16, alts
    for expected in ("accuracy-top10 vs trials", "policy of edge0", "sampled choices of edge5", "evolution of edge0",
                     "task embedding cosine similarity", "task distance matrix"):
        assert expected in alts
    assert page.omitted == {}
    assert "script" not in page.tags and "link" not in page.tags  # self-contained: nothing fetched, nothing run
    assert "http://" not in html and "https://" not in html
    header = page.tables["summary-table"][0]
    assert header[-1] == "rs: accuracy-top10 (trials)"  # the compared random search, beside each task
    rs_rows = ds.dataset(nb201 / "rs" / "ledger").to_table().to_pylist()
    for row in page.tables["summary-table"][1:]:
        value, trials = row[-1].split()
        assert 0 < float(value) < 100 and trials == f"({sum(r['task'] == row[0] for r in rs_rows)})"


def test_summary_and_best_tables_match_the_ledger(nb201, nb201_report):
    page = _Page(nb201_report)
    rows = ds.dataset(nb201 / "reinforce" / "ledger").to_table().to_pylist()
    summary = {r[0]: r for r in page.tables["summary-table"][1:]}
    assert set(summary) == {"cifar10", "cifar100", "imagenet"}
    best_table = page.tables["best-table"][1:]
    for task, cells in summary.items():
        mine = [r for r in rows if r["task"] == task and r["status"] == "ok"]
        ranked = sorted(mine, key=lambda r: -r["val_accuracy"])  # stable: ties keep trial order
        top10 = np.mean([r["test_accuracy"] for r in ranked[:10]])
        assert int(cells[1]) == len([r for r in rows if r["task"] == task])
        assert float(cells[3]) == pytest.approx(ranked[0]["val_accuracy"], abs=1e-4)
        assert float(cells[4]) == pytest.approx(ranked[0]["test_accuracy"], abs=1e-4)
        assert float(cells[5]) == pytest.approx(top10, abs=1e-4)
        assert cells[6] == "median cell"
        first = next(r for r in best_table if r[0] == task and r[1] == "1")
        config = ", ".join(f"{k}={v}" for k, v in json.loads(ranked[0]["config"]).items())
        assert first[4] == config and float(first[2]) == pytest.approx(ranked[0]["val_accuracy"], abs=1e-4)


def test_a_search_without_checkpoint_or_distance_renders_and_says_so(nb201, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(nb201 / "rs" / "ledger", bare / "ledger")  # the ledger alone
    report = build_report(str(bare))
    page = _Page(report.html)
    assert set(page.omitted) == {"policy", "similarity", "distance"}
    assert "no checkpoint.pt" in page.omitted["policy"] and "no distance.parquet" in page.omitted["distance"]
    assert len(_decoded_pngs(page)) == 1 + 6 + 1  # curves, sampled heatmaps, evolution
    assert report.search.method == "unknown" and len(report.search.rows) == 40


def test_bad_search_dir_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "report.html"
    with pytest.raises(ReportError, match="does not exist"):
        render_report(str(tmp_path / "missing"), str(out))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TamlError, match="holds no search"):
        render_report(str(tmp_path / "empty"), str(out))
    assert not out.exists()
    assert main(["report", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"taml: error: search directory {tmp_path / 'missing'} does not exist"]
    assert not out.exists()


def test_text_search_report_tracks_input_modules(tmp_path, samples_dir, feature_cache_dir):
    space = tmp_path / "space.json"
    decisions = [("input_module", ["random-hashed-64", "glove-6b-50d"]), ("fine_tune", [False]),
                 ("hidden_layers", [1]), ("hidden_size", [8]), ("activation", ["relu"]), ("normalization", ["none"]),
                 ("dropout", [0.0]), ("deep_lr", [0.1]), ("deep_reg", [0.0]), ("wide_lr", [0.1]), ("wide_reg", [0.0]),
                 ("training_samples", [1000])]
    space.write_text(json.dumps({"name": "tiny-text", "decisions": [{"name": n, "choices": c} for n, c in decisions]}))
    run_search(SearchSettings(tasks=("sms_spam", "mpqa"), trials=6, out=str(tmp_path / "run"), space=str(space),
                              data_dir=str(samples_dir), cache_dir=str(feature_cache_dir), budget_scale=0.01,
                              progress=False, search_id="text"), tracker=MemoryTracker())
    report = build_report(str(tmp_path / "run"), data_dir=str(samples_dir))
    page = _Page(report.html)
    assert "evolution" in report.sections and "Evolution of P(input_module) vs trials" in report.html
    assert "evolution of input_module" in [img["alt"] for img in page.images]
    summary = page.tables["summary-table"][1:]
    assert [r[6] for r in summary] == ["majority class", "majority class"]
    assert all(0.0 < float(r[7]) < 1.0 for r in summary)
    _decoded_pngs(page)
    # The search recorded its data directory: the references come from it without being told.
    from transfer_automl.report import load_search

    told, recorded = load_search(str(tmp_path / "run"), data_dir=str(samples_dir)), load_search(str(tmp_path / "run"))
    assert recorded.references == told.references and recorded.references["mpqa"].source == str(samples_dir)


def test_report_of_a_search_on_s3_reads_through_the_store(nb201, s3_bucket, tmp_path):
    from transfer_automl.storage import get_store

    store = get_store(f"s3://{s3_bucket}/searches/nb")
    for path in (nb201 / "reinforce").rglob("*"):
        if path.is_file() and (path.parent.name == "ledger" or path.name in ("checkpoint.pt", "distance.parquet")):
            store.put_file(str(path.relative_to(nb201 / "reinforce")), path)
    report = build_report(store.uri)
    assert report.omitted == {} and report.search.method == "reinforce"
    local = load_search(str(nb201 / "reinforce"), with_references=False)
    assert report.search.rows == local.rows and report.search.distance == local.distance
    assert report.search.checkpoint["step"] == local.checkpoint["step"] == 40


def test_report_is_logged_into_the_searchs_controller_run(tmp_path, toy_table, monkeypatch, capsys):
    """`taml report --mlflow`: report.html lands in the controller run, which stays FINISHED."""
    import json

    from mlflow.tracking import MlflowClient

    from transfer_automl.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "search"
    assert main(["search", "--table", str(toy_table), "--metric-columns", "t1,t2", "--trials", "4",
                 "--search-id", "logged", "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "r.html"), "--mlflow", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["mlflow_run_id"]

    client = MlflowClient(tracking_uri=SearchDir(out).default_tracking_uri())
    run = client.get_run(run_id)
    assert run.data.tags["taml.search_id"] == "logged" and run.data.tags["taml.role"] == "controller"
    assert run.info.status == "FINISHED"
    assert "report.html" in [a.path for a in client.list_artifacts(run_id)]
    logged = client.download_artifacts(run_id, "report.html", str(tmp_path / "back"))
    assert open(logged, encoding="utf-8").read() == (tmp_path / "r.html").read_text(encoding="utf-8")

"""The champion as a service, end to end: a real search registers `taml-mpqa@champion`; a fresh
process that cannot import transfer_automl, open the search directory or the task data, or
unpickle anything loads it from the registry and labels raw sentences; `taml predict` streams
Parquet, CSV and JSON Lines files through it; `mlflow models serve` answers JSON and CSV requests
with the same predictions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from transfer_automl.cli import main
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchSettings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHAMPION = "models:/taml-mpqa@champion"
SENTENCES = ["I really love this, it is wonderful.", "This is a terrible, awful idea.", "The meeting is on Tuesday.",
             "Nobody trusts them anymore.", "", "Ünïcödé text, 日本語 and 🙂"]
# Cheap children: a frozen random-hashed table with the wide tower, or the wide tower alone.
SPACE = {"name": "serving-small", "decisions": [
    {"name": "input_module", "choices": ["random-hashed-64"]},
    {"name": "fine_tune", "choices": [False]},
    {"name": "hidden_layers", "choices": [1]},
    {"name": "hidden_size", "choices": [16, 32]},
    {"name": "activation", "choices": ["relu"]},
    {"name": "normalization", "choices": ["layer"]},
    {"name": "dropout", "choices": [0.0]},
    {"name": "deep_lr", "choices": [0.03]},
    {"name": "deep_reg", "choices": [0.0001, "disable_deep_tower"]},
    {"name": "wide_lr", "choices": [0.1]},
    {"name": "wide_reg", "choices": [0.0001]},
    {"name": "training_samples", "choices": [5000]},
]}


@pytest.fixture(scope="module")
def registry(tmp_path_factory, samples_dir):
    """A search on the sample mpqa task, its champion in a sqlite registry outside the search dir;
    then everything of the search but MLflow's artifact store is deleted."""
    root = tmp_path_factory.mktemp("serving")
    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    uri = f"sqlite:///{root / 'registry' / 'mlflow.db'}"
    (root / "registry").mkdir()
    search = root / "search"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
            mp.delenv(var, raising=False)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        result = run_search(SearchSettings(
            tasks=("mpqa",), trials=3, batch_size=3, seed=0, out=str(search), space=str(space),
            data_dir=str(samples_dir), cache_dir=str(search / "cache"), search_id="serving", progress=False))
    assert [r.champion for r in result.champions.registered] == [True]
    for path in search.iterdir():  # the ledger, checkpoint, feature cache: gone; MLflow's store stays
        if path.name != "mlartifacts":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return {"uri": uri, "root": root, "search": search, "artifacts": search / "mlartifacts"}


def _in_process(uri, texts):
    from transfer_automl.tracking.mlflow import load_serving_model

    model, inputs = load_serving_model(CHAMPION, uri)
    assert inputs == ["text"]
    return model.predict(pd.DataFrame({"text": texts}))


FRESH = textwrap.dedent("""
    import json, os, pickle, sys
    sys.modules["transfer_automl"] = None  # not installed where the model is served
    refused, unpickled = json.loads(os.environ["REFUSED"]), []
    allowed = os.environ["ALLOWED"]

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if any(path.startswith(r) for r in refused) and not path.startswith(allowed):
                raise PermissionError(f"refused: {path}")

    def no_unpickling(*args, **kwargs):
        unpickled.append(repr(args)[:80])
        raise RuntimeError("unpickling refused")

    class NoUnpickler:
        def __init__(self, *args, **kwargs):
            no_unpickling(*args)

    pickle.load = pickle.loads = no_unpickling
    pickle.Unpickler = NoUnpickler
    import torch
    torch.load = no_unpickling
    sys.addaudithook(hook)
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model("models:/taml-mpqa@champion")
    out = model.predict(pd.DataFrame({"text": json.loads(os.environ["TEXTS"])}))
    print(json.dumps({"predictions": out.to_dict("list"), "unpickled": unpickled, "cuda": torch.cuda.is_available(),
                      "taml_loaded": sys.modules.get("transfer_automl") is not None}))
""")


@pytest.fixture(scope="module")
def fresh(registry, samples_dir, shared_text_or_none):
    # The search, the task data and this checkout's source (the model carries its own copy of its code).
    refused = [str(registry["search"].resolve()), str(samples_dir.resolve()), str((REPO / "src").resolve())]
    refused += [str(shared_text_or_none.resolve())] if shared_text_or_none else []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TAML_", "PYTHONPATH"))}
    env.update(MLFLOW_TRACKING_URI=registry["uri"], REFUSED=json.dumps(refused), CUDA_VISIBLE_DEVICES="",
               ALLOWED=str(registry["artifacts"].resolve()), TEXTS=json.dumps(SENTENCES))
    done = subprocess.run([sys.executable, "-c", FRESH], env=env, cwd=registry["root"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def shared_text_or_none():
    from tests.conftest import SHARED_TEXT

    return SHARED_TEXT if SHARED_TEXT.is_dir() else None


def test_a_fresh_process_without_the_package_search_dir_or_data_labels_raw_sentences(registry, fresh):
    predicted = fresh["predictions"]
    assert set(predicted["label"]) <= {"neg", "pos"} and len(predicted["label"]) == len(SENTENCES)
    assert list(predicted) == ["label", "prob_neg", "prob_pos"]
    assert all(abs(a + b - 1) < 1e-6 for a, b in zip(predicted["prob_neg"], predicted["prob_pos"], strict=True))
    assert not fresh["taml_loaded"] and not fresh["cuda"]
    assert predicted == _in_process(registry["uri"], SENTENCES).to_dict("list")  # exactly, through JSON


def _champion_files(uri):
    import mlflow
    import mlflow.artifacts

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        return Path(mlflow.artifacts.download_artifacts(CHAMPION))
    finally:
        mlflow.set_tracking_uri(previous)


def test_no_champion_artifact_needs_unpickling(registry, fresh):
    """Loading and predicting with pickle and torch.load refused works; no file is a pickle or a
    torch zip archive; the MLmodel names its code, not a cloudpickled python_model."""
    assert fresh["unpickled"] == []
    model_dir = _champion_files(registry["uri"])
    files = [p for p in model_dir.rglob("*") if p.is_file()]
    assert {"MLmodel", "meta.json", "child.safetensors", "wide.safetensors"} <= {p.name for p in files}
    for path in files:
        head = path.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), f"{path} is a pickle"
        assert path.suffix not in (".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".ckpt"), path
        if zipfile.is_zipfile(path):
            assert not any(n.endswith(".pkl") for n in zipfile.ZipFile(path).namelist()), f"{path} holds a pickle"
    flavor = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["python_function"]
    assert "python_model" not in flavor and flavor["model_code_path"].endswith("champion_model.py")


# -- taml predict --------------------------------------------------------------------------------

def _write(path: Path, texts, column="text"):
    frame = pd.DataFrame({"id": range(len(texts)), column: texts})
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_taml_predict_streams_a_file_in_batches_to_parquet(registry, tmp_path, capsys, monkeypatch, suffix):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    texts = [SENTENCES[i % len(SENTENCES)] + f" {i}" for i in range(25)]
    source = _write(tmp_path / f"texts{suffix}", texts)
    out = tmp_path / "predictions.parquet"
    assert main(["predict", "--model", CHAMPION, "--input", str(source), "--out", str(out), "--batch-size", "7",
                 "--json", "--force"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 25 and sum(summary["labels"].values()) == 25
    written = pq.read_table(out).to_pandas()
    assert written["row"].tolist() == list(range(25))
    expected = _in_process(registry["uri"], texts)
    pd.testing.assert_frame_equal(written.drop(columns="row"), expected, check_exact=True, check_dtype=False)


def _one_line_error(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("taml: error: "), err
    return err[0]


def test_taml_predict_refuses_bad_inputs_in_one_line(registry, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    out = str(tmp_path / "out.parquet")
    base = ["predict", "--model", CHAMPION, "--out", out, "--input"]
    body = _write(tmp_path / "body.csv", ["a", "b"], column="body")
    assert "has no column 'text' (columns: ['id', 'body']); name the text column with --column" in \
        _one_line_error(base + [str(body)], capsys)
    assert main(base + [str(body), "--column", "body", "--no-progress"]) == 0  # named, it reads
    capsys.readouterr()
    (tmp_path / "empty.csv").write_text("")
    assert "empty.csv is empty" in _one_line_error(base + [str(tmp_path / "empty.csv"), "--force"], capsys)
    (tmp_path / "header.csv").write_text("text\n")
    assert "header.csv has no rows" in _one_line_error(base + [str(tmp_path / "header.csv"), "--force"], capsys)
    images = tmp_path / "digits.parquet"
    pq.write_table(pa.table({"pixels": [b"\x00" * 64], "height": [8], "width": [8], "label": ["0"]}), images)
    assert "holds images (column 'pixels'), but the model reads text" in \
        _one_line_error(base + [str(images), "--force"], capsys)
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), numbers)
    assert "column 'text' holds int64, not text" in _one_line_error(base + [str(numbers), "--force"], capsys)
    nulls = tmp_path / "nulls.jsonl"
    nulls.write_text('{"text": "fine"}\n{"text": null}\n')
    assert "nulls.jsonl column 'text' is null in row 1" in _one_line_error(base + [str(nulls), "--force"], capsys)
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"text": "fine"}\nnot json\n')
    assert "bad.jsonl line 2 is not JSON" in _one_line_error(base + [str(lines), "--force"], capsys)
    assert "unknown format '.txt'" in _one_line_error(base + [str(tmp_path / "texts.txt"), "--force"], capsys)
    assert f"--out {out} exists; pass --force" in _one_line_error(base + [str(body)], capsys)
    missing = _one_line_error(["predict", "--model", "models:/taml-nothing@champion", "--input", str(body),
                               "--out", str(tmp_path / "o2.parquet"), "--column", "body"], capsys)
    assert "model 'models:/taml-nothing@champion' cannot be loaded in MLflow sqlite" in missing


# -- mlflow models serve -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(registry):
    from transfer_automl.serving.server import scoring_server

    with scoring_server(CHAMPION, registry["root"] / "serve.log", tracking_uri=registry["uri"]) as url:
        yield url


def _post(url, body, content_type):
    from transfer_automl.serving.server import invoke

    return pd.DataFrame(json.loads(invoke(url, body, content_type))["predictions"])


def test_mlflow_models_serve_answers_json_and_csv_like_the_model_in_process(registry, server):
    expected = _in_process(registry["uri"], SENTENCES)
    split = {"dataframe_split": {"columns": ["text"], "data": [[s] for s in SENTENCES]}}
    records = {"dataframe_records": [{"text": s} for s in SENTENCES]}
    inputs = {"inputs": {"text": SENTENCES}}
    for body in (split, records, inputs):
        answered = _post(server, json.dumps(body).encode(), "application/json")
        pd.testing.assert_frame_equal(answered, expected, check_exact=True, check_dtype=False)
    # CSV has no empty string: pandas reads an empty field as NaN, which the signature refuses.
    written = [s for s in SENTENCES if s]
    csv = pd.DataFrame({"text": written}).to_csv(index=False).encode()
    pd.testing.assert_frame_equal(_post(server, csv, "text/csv"), _in_process(registry["uri"], written),
                                  check_exact=True, check_dtype=False)


def test_the_server_refuses_input_without_a_text_column(server):
    import urllib.error

    from transfer_automl.serving.server import invoke

    with pytest.raises(urllib.error.HTTPError) as refused:
        invoke(server, json.dumps({"dataframe_records": [{"body": "x"}]}).encode(), "application/json")
    assert refused.value.code == 400 and "text" in refused.value.read().decode()

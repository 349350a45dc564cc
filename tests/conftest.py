from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TEXT = Path(os.environ.get("TAML_SHARED_TEXT", REPO.parent / "shared" / "data" / "text"))
SAMPLES = REPO / "src" / "transfer_automl" / "tasks" / "samples"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_text() -> Path:
    """The real task files in ../shared/data/text; tests that need them skip elsewhere."""
    if not (SHARED_TEXT / "sms_spam.parquet").is_file():
        pytest.skip(f"shared data not found at {SHARED_TEXT}")
    return SHARED_TEXT


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def feature_cache_dir(tmp_path_factory) -> Path:
    """One frozen-feature cache for the whole session, so each (task, module) embeds once."""
    return tmp_path_factory.mktemp("features")


@pytest.fixture()
def toy_table(tmp_path):
    """A tiny benchmark table: two decisions, two tasks (t1, t2) with known values."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"depth": d, "act": a, "t1": d + (a == "relu"), "t2": -d + 0.5 * (a == "tanh")}
            for d in (1, 2, 3, 4) for a in ("relu", "tanh")]
    path = tmp_path / "toy.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The controllers and children in tests are tiny: intra-op threads only add overhead, and
    on a busy 2-core machine they turned one-second tests into minutes."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_MLFLOW_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")
# Whatever runs outside a test's own fixtures never writes the working directory's ./mlflow.db.
os.environ["TAML_HOME"] = tempfile.mkdtemp(prefix="taml-home-session-")
# Finished searches record themselves in the task history (default under ~/.cache): a temporary one.
os.environ["TAML_HISTORY"] = tempfile.mkdtemp(prefix="taml-history-session-")


@pytest.fixture(autouse=True, scope="module")
def _module_taml_home(tmp_path_factory):
    """A module-scoped fixture (a search a module's tests share) logs into a store of the module's
    own: autouse fixtures of a scope run before the others of that scope."""
    with pytest.MonkeyPatch.context() as mp:
        for var in _MLFLOW_VARIABLES:
            mp.delenv(var, raising=False)
        mp.setenv("TAML_HOME", str(tmp_path_factory.mktemp("taml-home-module")))
        yield


@pytest.fixture(autouse=True)
def taml_home(monkeypatch, tmp_path_factory) -> Path:
    """No test may log into a user's MLflow server or into the shared store of the directory the
    tests run in: each test's searches share the store `<taml_home>/mlflow.db` (TAML_HOME)."""
    for var in (*_MLFLOW_VARIABLES, "TAML_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path_factory.mktemp("taml-home")
    monkeypatch.setenv("TAML_HOME", str(home))
    return home


# Tests on a server (S3 endpoint, Kubeflow or MLflow API) are slow: `make test-fast` runs no server.
SERVER_FIXTURES = {"moto_server", "s3_env", "s3_bucket", "kfp_server", "mlflow_server"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture()
def tiny_text_space(tmp_path) -> Path:
    """A one-configuration text space (random-hashed module, 1x8): a child trains in well under a second."""
    import json

    decisions = [("input_module", ["random-hashed-64"]), ("fine_tune", [False]), ("hidden_layers", [1]),
                 ("hidden_size", [8]), ("activation", ["relu"]), ("normalization", ["none"]), ("dropout", [0.0]),
                 ("deep_lr", [0.1]), ("deep_reg", [0.0]), ("wide_lr", [0.1]), ("wide_reg", [0.0]),
                 ("training_samples", [1000])]
    space = tmp_path / "tiny-space.json"
    space.write_text(json.dumps({"name": "tiny", "decisions": [{"name": n, "choices": c} for n, c in decisions]}))
    return space

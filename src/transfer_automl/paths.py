"""Where this machine keeps taml's local working files (caches, MLflow stores of S3 searches), and
the home of the MLflow store that local searches share."""

from __future__ import annotations

import os
from pathlib import Path


def default_work_root() -> Path:
    """TAML_WORK_DIR, else $XDG_CACHE_HOME/transfer-automl, else ~/.cache/transfer-automl."""
    if os.environ.get("TAML_WORK_DIR"):
        return Path(os.environ["TAML_WORK_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "transfer-automl"


def tracking_home() -> Path:
    """Where local searches share one MLflow store (`mlflow.db`) and its artifacts (`mlartifacts/`):
    TAML_HOME when set, else the working directory, which is where `mlflow ui` (MLflow 3's default
    store, sqlite:///mlflow.db) looks without flags."""
    home = os.environ.get("TAML_HOME")
    return Path(home).expanduser().absolute() if home else Path.cwd()

"""Where this machine keeps taml's local working files (caches, MLflow stores of S3 searches)."""

from __future__ import annotations

import os
from pathlib import Path


def default_work_root() -> Path:
    """TAML_WORK_DIR, else $XDG_CACHE_HOME/transfer-automl, else ~/.cache/transfer-automl."""
    if os.environ.get("TAML_WORK_DIR"):
        return Path(os.environ["TAML_WORK_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "transfer-automl"

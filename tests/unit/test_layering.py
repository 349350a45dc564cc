"""Dependency direction (STYLE.md): nothing in src imports kfp; space/ imports no torch;
mlflow only in tracking/mlflow.py; boto3 only in storage/s3.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "transfer_automl"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_in_src_imports_kfp():
    offenders = [str(p) for p in SRC.rglob("*.py") if "kfp" in _imports(p)]
    assert offenders == []


def test_mlflow_is_imported_only_by_the_mlflow_tracker():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "mlflow" in _imports(p)]
    assert offenders == ["tracking/mlflow.py"]


def test_boto3_is_imported_only_by_the_s3_store():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if {"boto3", "botocore"} & _imports(p)]
    assert offenders == ["storage/s3.py"]


def test_space_package_loads_without_torch():
    code = "import sys, transfer_automl.space; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

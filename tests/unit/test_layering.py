"""Dependency direction (STYLE.md): nothing in src imports kfp (kubeflow/ only inside functions); space/ imports no torch;
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


def _module_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_kfp_is_imported_only_inside_the_kubeflow_functions():
    # The kubeflow/ package drives kfp (local runs, kfp.Client) for the CLI, so it imports kfp,
    # but only inside its functions: importing transfer_automl (or a component's step) never
    # loads kfp, and the steps the components call stay free of it.
    kubeflow = SRC / "kubeflow"
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if "kfp" in (_module_level_imports(p) if kubeflow in p.parents else _imports(p))]
    assert offenders == []
    assert any("kfp" in _imports(p) for p in kubeflow.rglob("*.py"))  # the rule above still bites


def test_mlflow_is_imported_only_by_the_mlflow_tracker():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "mlflow" in _imports(p)]
    assert offenders == ["tracking/mlflow.py"]


def test_boto3_is_imported_only_by_the_s3_store():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if {"boto3", "botocore"} & _imports(p)]
    assert offenders == ["storage/s3.py"]


def test_space_package_loads_without_torch():
    code = "import sys, transfer_automl.space; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

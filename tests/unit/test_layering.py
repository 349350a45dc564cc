"""Dependency direction (STYLE.md): nothing in src imports kfp (kubeflow/ only inside functions); space/ imports no torch;
mlflow only in tracking/mlflow.py; boto3 only in storage/s3.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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
    # serving/champion_model.py is the champion's own code (MLflow models from code): copied into
    # the logged model, it runs where transfer_automl is not installed and imports nothing of it.
    offenders = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "mlflow" in _imports(p))
    assert offenders == ["serving/champion_model.py", "tracking/mlflow.py"]
    served = SRC / "serving" / "champion_model.py"
    assert not {"transfer_automl", "kfp", "boto3"} & _imports(served)


def test_boto3_is_imported_only_by_the_s3_store():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if {"boto3", "botocore"} & _imports(p)]
    assert offenders == ["storage/s3.py"]


@pytest.mark.slow
def test_space_package_loads_without_torch():
    code = "import sys, transfer_automl.space; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# Packages from the bottom up: a package imports only from layers below its own (function-level
# imports included), so the graph has no cycle and a settings object never climbs back up.
LAYERS = (
    {"errors", "trial_status", "console", "paths"},
    {"registry", "outputs", "limits"},
    {"space", "storage", "tracking"},
    {"tasks", "controllers", "rewards", "history"},
    {"algorithms", "children"},
    {"search", "serving"},
    {"transfer", "report"},
    {"study"},
    {"kubeflow"},  # below the steps: continue_search submits the next window with kubeflow.continuation
    {"steps"},
    {"cli"},
)


def _package_graph() -> dict[str, set[str]]:
    """{package: transfer_automl packages it imports}, from every import in every module."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        package = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if package == "__init__":
            continue
        targets = graph.setdefault(package, set())
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for module in modules:
                parts = module.split(".")
                if parts[0] == "transfer_automl" and len(parts) > 1 and parts[1] != package:
                    targets.add(parts[1])
    return graph


def test_every_package_is_in_a_layer():
    layered = set().union(*LAYERS)
    assert set(_package_graph()) <= layered, set(_package_graph()) - layered


def test_packages_import_only_from_lower_layers():
    layer = {package: i for i, packages in enumerate(LAYERS) for package in packages}
    upward = sorted((a, b) for a, targets in _package_graph().items() for b in targets if layer[b] >= layer[a])
    assert upward == []


def test_the_package_graph_has_no_cycle():
    graph, state = _package_graph(), {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_no_runner_reaches_into_another_modules_private_helpers():
    roots = [SRC, SRC.parents[1] / "components", SRC.parents[1] / "pipelines", SRC.parents[1] / "benchmarks"]
    offenders = []
    for root in roots:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transfer_automl") and \
                        any(a.name.startswith("_") for a in node.names):
                    offenders.append(f"{path.name}: from {node.module} import {[a.name for a in node.names]}")
    assert offenders == []


def test_search_settings_flags_are_generated_not_typed():
    # Only the command line builds parsers; the settings' flags come from SearchSettings' metadata
    # (study/settings.py: add_arguments).
    typed = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
             if "add_argument(" in p.read_text() and p.relative_to(SRC).as_posix() not in ("cli.py", "study/settings.py")]
    assert typed == []

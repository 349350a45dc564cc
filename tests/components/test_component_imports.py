"""Components are thin shells (STYLE.md): at module level they import only kfp (and the image
constant, and `typing` for a NamedTuple of outputs, which KFP's executor imports as well);
inside the function only transfer_automl.steps; and they install nothing."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

COMPONENTS = sorted(p for p in (REPO / "components").glob("*/component.py"))
ALLOWED_AT_MODULE_LEVEL = {"kfp", "components.image", "typing"}


def _module_level_imports(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text()).body:  # top-level statements only
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def _allowed(name: str) -> bool:
    return name in ALLOWED_AT_MODULE_LEVEL or name.startswith("kfp.")


def test_there_are_components():
    assert {p.parent.name for p in COMPONENTS} >= {
        "init_search", "controller_step", "train_pack", "aggregate_rewards", "task_distance", "transfer_init",
        "resume_search", "register_champion", "report"}


@pytest.mark.parametrize("path", COMPONENTS, ids=lambda p: p.parent.name)
def test_component_imports_only_kfp_at_module_level(path):
    offenders = [name for name in _module_level_imports(path) if not _allowed(name)]
    assert offenders == [], f"{path} imports {offenders} at module level"


def test_the_image_module_imports_nothing():
    assert _module_level_imports(REPO / "components" / "image.py") == []


@pytest.mark.parametrize("path", COMPONENTS, ids=lambda p: p.parent.name)
def test_component_body_calls_only_the_steps(path):
    functions = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)]
    assert len(functions) == 1, f"{path}: one component function per file"
    inner = [n.module for n in ast.walk(functions[0]) if isinstance(n, ast.ImportFrom)]
    inner += [a.name for n in ast.walk(functions[0]) if isinstance(n, ast.Import) for a in n.names]
    assert inner and all(m.startswith("transfer_automl.steps") for m in inner), inner


@pytest.mark.parametrize("path", COMPONENTS, ids=lambda p: p.parent.name)
def test_component_runs_in_the_project_image_and_installs_nothing(path):
    """The child trainer runs the CUDA image (it asks for a GPU; a CPU-only pipeline sets the
    runtime image on its task), every other step the CPU runtime image."""
    from components.image import IMAGE, TRAINER_GPU_IMAGE

    name = path.parent.name
    component = getattr(importlib.import_module(f"components.{name}.component"), name)
    container = component.component_spec.implementation.container
    assert container.image == (TRAINER_GPU_IMAGE if name == "train_pack" else IMAGE)
    assert IMAGE != TRAINER_GPU_IMAGE
    command = " ".join(container.command or [])
    assert "pip install" not in command, command


@pytest.mark.parametrize("path", COMPONENTS, ids=lambda p: p.parent.name)
def test_search_settings_come_in_one_settings_mapping(path):
    """A setting typed by hand in a second place drifts (STYLE.md): the components that make a
    search take SearchSettings' fields as one `settings` dict, which init_search checks."""
    from transfer_automl.study import SearchSettings

    name = path.parent.name
    inputs = getattr(importlib.import_module(f"components.{name}.component"), name).component_spec.inputs or {}
    settings_fields = set(SearchSettings.__dataclass_fields__)
    allowed = {"tasks"} if name == "resume_search" else set()  # which stored search to continue, not a setting
    if name in ("register_champion", "continue_search"):
        # the refit is the pipeline's run-time parameter (refused in the settings mapping), checked
        # by SearchSettings' own fields (settings.check_fields) where register_champions reads it
        allowed = {"refit", "refit_k"}
    assert set(inputs) & settings_fields <= allowed, sorted(set(inputs) & settings_fields)
    if name in ("init_search", "task_distance", "transfer_init"):
        assert inputs["settings"].type == "Dict"

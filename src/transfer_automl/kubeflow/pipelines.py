"""The pipeline definitions of a checkout, by name, and their parameters from the command line.

Each `pipelines/<name>/pipeline.py` has NAME, `build_pipeline(rounds, children_per_round, gpu,
parallelism)` and `compile_all(out_dir)`; pipelines/ is not in the wheel, so they are loaded by
path from a checkout (`--pipelines-dir`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from transfer_automl.errors import ConfigError


@dataclass(frozen=True)
class BuildOptions:
    """Compile-time shape of a pipeline (KFP v2 has no loops: a run's rounds are unrolled)."""

    rounds: int | None = None  # None: the pipeline's default
    children_per_round: int | None = None
    gpu: bool = True  # train_pack asks for a GPU node (and runs the CUDA image)
    parallelism: int | None = None  # GPUs at once = packs per round; None: one child per pack
    max_trials: int | None = None  # the default budget of a pipeline that continues itself (multitask_search)

    def kwargs(self) -> dict[str, Any]:
        given = {"rounds": self.rounds, "children_per_round": self.children_per_round, "parallelism": self.parallelism,
                 "max_trials": self.max_trials}
        return {"gpu": self.gpu, **{k: v for k, v in given.items() if v is not None}}


def pipeline_modules(pipelines_dir: str | Path = "pipelines") -> dict[str, ModuleType]:
    """{name: module} of every pipelines_dir/<name>/pipeline.py, loaded by path."""
    return {path.parent.name: _load(path) for path in _definitions(pipelines_dir)}


def load_pipeline(name: str, pipelines_dir: str | Path = "pipelines") -> ModuleType:
    """The module of pipelines_dir/<name>/pipeline.py (only that one is loaded)."""
    definitions = {path.parent.name: path for path in _definitions(pipelines_dir)}
    if name not in definitions:
        raise ConfigError(f"pipeline {name!r} not found; available: {sorted(definitions)}")
    return _load(definitions[name])


def _definitions(pipelines_dir: str | Path) -> list[Path]:
    root = Path(pipelines_dir)
    definitions = sorted(root.glob("*/pipeline.py"))
    if not definitions:
        raise ConfigError(f"--pipelines-dir: no */pipeline.py under {root} (run from a checkout)")
    return definitions


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"taml_pipeline_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(module: ModuleType, options: BuildOptions = BuildOptions(), strict: bool = True):
    """The pipeline function with `options`; ValueError from the definition becomes a ConfigError.
    An option the pipeline does not take (max_trials: only a search that continues itself) is
    refused when `strict`, else left out (compiling every pipeline)."""
    import inspect

    kwargs = options.kwargs()
    accepted = inspect.signature(module.build_pipeline).parameters
    extra = sorted(k for k in kwargs if k not in accepted)
    if extra and strict:
        raise ConfigError(f"pipeline {module.NAME}: takes no {extra} (--max-trials: multitask_search)")
    try:
        return module.build_pipeline(**{k: v for k, v in kwargs.items() if k in accepted})
    except ValueError as exc:
        raise ConfigError(f"pipeline {module.NAME}: {exc}") from None


def compile_to(pipeline_func, path: str | Path) -> Path:
    from kfp import compiler

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func, str(path))
    return path


def spec_digest(path: str | Path) -> str:
    """A short content hash of a compiled pipeline, without the kfp version line."""
    lines = [line for line in Path(path).read_text().splitlines() if not line.startswith("sdkVersion:")]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


def parse_params(pipeline_func, pairs: list[str]) -> dict[str, Any]:
    """`name=value` pairs typed by the pipeline's inputs: lists as JSON or comma-separated, dicts
    as JSON, numbers and booleans parsed. Unknown names, bad values and missing required inputs
    are refused with the name."""
    inputs = pipeline_func.component_spec.inputs or {}
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"pipeline parameter {pair!r} is not name=value")
        if name not in inputs:
            raise ConfigError(f"pipeline parameter {name!r} is not an input of {pipeline_func.name}; "
                              f"inputs: {sorted(inputs)}")
        params[name] = _typed(name, inputs[name].type, text)
    missing = sorted(n for n, spec in inputs.items() if n not in params and spec.default is None and not spec.optional)
    if missing:
        raise ConfigError(f"pipeline {pipeline_func.name} needs parameter(s) {missing} (give name=value)")
    if isinstance(params.get("settings"), dict):  # the search's settings: refused here, not in a pod
        from transfer_automl.study.settings import check_pipeline_settings, require_data_dir

        check_pipeline_settings(params["settings"], "pipeline parameter settings")
        if "search_dir" in inputs and "target_tasks" not in inputs:  # a search that starts here: where its data is
            require_data_dir(params["settings"], "pipeline parameter settings")
    settings = params.get("settings") if isinstance(params.get("settings"), dict) else {}
    if "source_search" in inputs and not params.get("source_search") and settings.get("transfer") != "auto":
        # refused here, not in a pod: a transfer learns from one earlier search, or from the history
        raise ConfigError(f"pipeline {pipeline_func.name} needs parameter source_search (the search to transfer "
                          "from), or settings.transfer auto to learn from the task history")
    return params


def _typed(name: str, kind: str, text: str) -> Any:
    try:
        if kind == "String":
            return text
        if kind == "Integer":
            return int(text)
        if kind == "Float":
            return float(text)
        if kind == "Boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if kind == "List":
            if text.lstrip().startswith("["):
                value = json.loads(text)
                if not isinstance(value, list):
                    raise ValueError(text)
                return value
            return [t.strip() for t in text.split(",") if t.strip()]
        if kind == "Dict":
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError(text)
            return value
    except ValueError:
        raise ConfigError(f"pipeline parameter {name}: {text!r} is not a valid {kind}") from None
    raise ConfigError(f"pipeline parameter {name}: inputs of type {kind} cannot be given on the command line")

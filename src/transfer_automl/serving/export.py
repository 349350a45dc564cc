"""A trained text child as a self-contained serving bundle, and the pyfunc model that serves it.

`export_bundle(model, task, wide_buckets, directory)` writes what serving/champion_model.py loads:
`meta.json` (format, task, classes, child spec, input module entry, wide buckets, text limit),
`child.safetensors` (the child's state dict; a fine-tuned word table's rows go into the table
instead), `wide.safetensors` (the hash buckets the task's texts use, the wide tower's row order, and for
TF-IDF features their IDF),
`table.safetensors` / `vocab.json` (a word table) or `encoder/` (a sentence-transformers
directory). Every weight is a safetensors tensor: nothing in a bundle is unpickled.

`export_ensemble(models, task, wide_buckets, directory)` writes an ensemble champion (study/refit.py
`mode="ensemble"`): `ensemble.json` (format, task, classes, member directories in ranking order) and
one bundle per member in `member-<i>/`. A member whose input module files (a frozen word table's
vectors and words, an encoder directory) are byte for byte an earlier member's keeps none of its
own: its `meta.json` input entry says `files_from` (that member's directory), so five GloVe
children carry one 80 MB table, not five.

`serving_model(...)` adds what MLflow needs to log it (tracking/champion.py `ServingModel`): the
code file, the bundle as the artifact `bundle`, exact pins of the serving environment (numpy,
pandas, torch, safetensors and the module's own packages: not transfer_automl, kfp or the training
stack) and a neutral input example.
"""

from __future__ import annotations

import filecmp
import json
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from transfer_automl.children.embeddings import WordTableModule, get_module
from transfer_automl.children.tokens import compact, wide_bags
from transfer_automl.errors import ConfigError
from transfer_automl.tasks.text import TextTask
from transfer_automl.tracking.champion import ServingModel

CODE_FILE = Path(__file__).with_name("champion_model.py")
FORMAT, FORMAT_VERSION = "taml-champion", 1
ENSEMBLE_FORMAT, ENSEMBLE_FILE = "taml-champion-ensemble", "ensemble.json"
MODULE_FILES = ("table.safetensors", "vocab.json", "encoder")  # what an input module writes (serving_export)
BASE_REQUIREMENTS = ("numpy", "pandas", "torch", "safetensors")
INPUT_EXAMPLE = ("What a wonderful, helpful answer!", "The delivery was late and the box was broken.")


def export_bundle(model: Any, task: TextTask, wide_buckets: int, directory: str | Path) -> Path:
    """Write `model` (a trained WideDeepClassifier of `task`) as a bundle into `directory`."""
    import torch
    from safetensors.numpy import save_file as save_arrays
    from safetensors.torch import save_file as save_tensors

    from transfer_automl.limits import limits

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = model.spec
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    module_meta = None
    if spec.use_deep:
        module = get_module(spec.input_module)
        module_meta, arrays = module.serving_export(directory)
        if module_meta["kind"] == "sentence-transformer":
            module_meta["batch_size"] = 128 if spec.fine_tune else 4096
        if spec.fine_tune and isinstance(module, WordTableModule):
            # The child trained task-local rows (children/trainer.py, table_input): put them back
            # into the whole table at the rows the task's tokens use.
            _, used = compact(module.token_bags(task.texts))
            arrays["vectors"] = arrays["vectors"].copy()
            arrays["vectors"][used] = state.pop("embedding.weight").numpy()
        elif spec.fine_tune and module_meta["kind"] != "sentence-transformer":
            raise ConfigError(f"input module {module.name!r}: a fine-tuned child cannot be exported for serving")
        if arrays:
            save_arrays({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(directory / "table.safetensors"))
    if spec.use_wide:
        wide = wide_bags(task.texts, wide_buckets, spec.wide_features, task.splits["train"])
        arrays = {"buckets": wide.buckets.astype(np.int64)}
        if wide.idf is not None:  # TF-IDF: the train split's IDF of each row, and of an unseen bucket
            arrays |= {"idf": wide.idf.astype(np.float64), "idf_unseen": np.array([wide.idf_unseen])}
        save_arrays(arrays, str(directory / "wide.safetensors"))
    save_tensors(_unshared(state, torch), str(directory / "child.safetensors"))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "task": task.name, "classes": list(task.classes),
            "spec": spec.to_dict(), "input": module_meta, "wide_buckets": int(wide_buckets),
            "max_text_chars": limits().max_text_chars}
    (directory / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    return directory


def _unshared(state: dict[str, Any], torch: Any) -> dict[str, Any]:
    """safetensors refuses tensors that share memory: give each its own copy."""
    seen: set[int] = set()
    out = {}
    for key, tensor in state.items():
        pointer = tensor.untyped_storage().data_ptr() if tensor.numel() else -1
        out[key] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return out


def requirements(model: Any) -> list[str]:
    """Exact pins of the serving environment for `model` (a local version label such as +cpu dropped)."""
    names = list(BASE_REQUIREMENTS)
    if model.spec.use_deep:
        names += list(get_module(model.spec.input_module).serving_requirements())
    return [f"{name}=={version(name).split('+')[0]}" for name in names]


def export_ensemble(models: list[Any], task: TextTask, wide_buckets: int, directory: str | Path) -> Path:
    """Write `models` (trained children of `task`, ranking order) as one ensemble bundle."""
    if len(models) < 2:
        raise ConfigError(f"an ensemble bundle needs at least two models, got {len(models)}")
    directory = Path(directory)
    names = [f"member-{i}" for i in range(1, len(models) + 1)]
    for index, (name, model) in enumerate(zip(names, models, strict=True)):
        export_bundle(model, task, wide_buckets, directory / name)
        _share_module_files(directory, name, names[:index])
    meta = {"format": ENSEMBLE_FORMAT, "format_version": FORMAT_VERSION, "task": task.name,
            "classes": list(task.classes), "members": names}
    (directory / ENSEMBLE_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    return directory


def _share_module_files(directory: Path, name: str, earlier: list[str]) -> None:
    """Drop `name`'s input module files when an earlier member has the same ones; point to it."""
    own = [f for f in MODULE_FILES if (directory / name / f).exists()]
    if not own:
        return
    for other in earlier:
        if all(_same(directory / name / f, directory / other / f) for f in own):
            meta_file = directory / name / "meta.json"
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            meta["input"]["files_from"] = f"../{other}"
            meta_file.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
            for f in own:
                shutil.rmtree(directory / name / f) if (directory / name / f).is_dir() else (directory / name / f).unlink()
            return


def _same(mine: Path, theirs: Path) -> bool:
    if mine.is_dir():
        if not theirs.is_dir():
            return False
        compared = filecmp.dircmp(mine, theirs)
        return not (compared.left_only or compared.right_only or compared.diff_files or compared.funny_files) and all(
            _same(mine / sub, theirs / sub) for sub in compared.common_dirs)
    return theirs.is_file() and filecmp.cmp(mine, theirs, shallow=False)


def serving_model(model: Any, task: TextTask, wide_buckets: int, directory: str | Path) -> ServingModel:
    """The bundle written into `directory` and everything MLflow needs to log it as a pyfunc model."""
    bundle = export_bundle(model, task, wide_buckets, directory)
    return ServingModel(code_file=str(CODE_FILE), bundle=str(bundle), pip_requirements=requirements(model),
                        input_example=list(INPUT_EXAMPLE), classes=list(task.classes))


def serving_ensemble(models: list[Any], task: TextTask, wide_buckets: int, directory: str | Path) -> ServingModel:
    """`serving_model` for an ensemble champion: every member's requirements, once each."""
    bundle = export_ensemble(models, task, wide_buckets, directory)
    pins = sorted({pin for model in models for pin in requirements(model)})
    return ServingModel(code_file=str(CODE_FILE), bundle=str(bundle), pip_requirements=pins,
                        input_example=list(INPUT_EXAMPLE), classes=list(task.classes))

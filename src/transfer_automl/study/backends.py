"""Where children come from: trained on text tasks, or looked up in a benchmark table.

A backend fixes the search space, the task names, the trainer (`train(config, task, seed) ->
ChildResult`) with the object it wants for each task, and the reference figure each task's
results are printed beside (the majority class for text, the median cell for a table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_automl.errors import ConfigError
from transfer_automl.space import SearchSpace, get_space


@dataclass
class Reference:
    name: str  # "majority class" | "median cell"
    val: float
    test: float


@dataclass
class Backend:
    space: SearchSpace
    task_names: list[str]
    trainer: Any  # train(config, task_object, seed) -> ChildResult
    task_objects: dict[str, Any]
    references: dict[str, Reference]
    data_location: str
    trainer_settings: dict[str, Any] = field(default_factory=dict)
    # What the search read (tasks.registry.data_record): data directory, each task file's content
    # hash, the bundled-sample fallback. Empty for tables, whose source is data_location.
    data_record: dict[str, Any] = field(default_factory=dict)


def make_backend(settings: Any, directory: Any = None) -> Backend:
    """The backend of `settings` (study.settings.SearchSettings): a table's, or text/image children
    with the feature cache at settings.cache_dir, else <directory>/cache/features (an in-memory
    study without a directory: the local working directory's cache)."""
    if settings.tabular:
        return table_backend(settings.tasks, settings.benchmark, settings.table, settings.metric_columns,
                             settings.space, settings.data_dir)
    if settings.cache_dir:
        cache: Any = settings.cache_dir
    elif directory is not None:
        cache = directory.store.sub("cache/features")
    else:
        from transfer_automl.study.search_dir import default_work_root

        cache = default_work_root() / "cache" / "features"
    return text_backend(settings.tasks, settings.space or "taml-text", settings.data_dir, cache,
                        settings.budget_scale, timeout_s=settings.trial_timeout)


def text_backend(tasks: tuple[str, ...], space: str, data_dir: str | None, cache_dir: str | Path,
                 budget_scale: float, timeout_s: float | None = None) -> Backend:
    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.study.image_backend import image_backend, wants_image_backend
    from transfer_automl.tasks import data_dir as resolve_data_dir
    from transfer_automl.tasks import load_task
    from transfer_automl.tasks.features import FeatureCache
    from transfer_automl.tasks.registry import absolute_location, data_record

    if wants_image_backend(tasks, space, data_dir):  # image tasks: `taml-image`, or the default space
        return image_backend(tasks, space, data_dir, cache_dir, budget_scale, timeout_s)
    if not tasks:
        raise ConfigError("tasks: give at least one task")
    search_space = get_space(space)
    _check_text_space(search_space, budget_scale)
    loaded = [load_task(name, data_dir) for name in tasks]
    config = ChildTrainerConfig(budget_scale=budget_scale, timeout_s=timeout_s)
    return Backend(
        space=search_space, task_names=[t.name for t in loaded],
        trainer=TextChildTrainer(config, FeatureCache(cache_dir)),
        task_objects={t.name: t for t in loaded},
        references={t.name: Reference("majority class", t.majority_accuracy("validation"), t.majority_accuracy("test"))
                    for t in loaded},
        data_location=absolute_location(resolve_data_dir(data_dir)), trainer_settings=config.to_dict(),
        data_record=data_record(loaded, data_dir),
    )


def _check_text_space(space: SearchSpace, budget_scale: float) -> None:
    """Fail before anything runs when the text trainer cannot read the space's decisions."""
    from transfer_automl.children.spec import child_spec

    if space.has_conditions:
        raise ConfigError(f"space {space.name!r} has conditional decisions; the text child trainer needs every decision")
    child_spec({d.name: d.choices[0] for d in space.decisions}, budget_scale, batch_size=100)


def table_backend(tasks: tuple[str, ...], benchmark: str | None, table: str | None, metric_columns: tuple[str, ...],
                  space: str | None, data_dir: str | None) -> Backend:
    """A named benchmark (`benchmark`) or the user's own table (`table` + `metric_columns`)."""
    from transfer_automl.children.table import TableChildTrainer
    from transfer_automl.tasks.benchmarks import load_benchmark, table_benchmark_from_file

    if benchmark:
        bench = load_benchmark(benchmark, data_dir)
    else:
        declared = get_space(space) if space else None
        bench = table_benchmark_from_file(table, metric_columns=list(metric_columns) or None, space=declared)
    names = list(tasks) or list(bench.tasks)
    unknown = sorted(set(names) - set(bench.tasks))
    if unknown:
        raise ConfigError(f"tasks: {unknown} are not tasks of {bench.name}; it has {bench.tasks}")
    references = {}
    for name in names:
        median_test = bench.median_value(name)
        if bench.has_test(name):
            import numpy as np

            median_test = float(np.median(bench.test_metric[name]))
        references[name] = Reference("median cell", bench.median_value(name), median_test)
    return Backend(space=bench.space, task_names=names, trainer=TableChildTrainer(bench),
                   task_objects={n: n for n in names}, references=references,
                   data_location=bench.source or bench.name)

"""The image backend: image tasks (`tasks.images`) trained by `ImageChildTrainer` over `taml-image`.

A search uses it when its space is `taml-image`, or every task names an image source
(`digits_optdigits:is0`, `mnist_test:odd_even`, ...); there the text default space (`taml-text`)
means `taml-image` (text modules cannot read pixels) and a space file is used as it is. Task names resolve in `--data-dir` when the
source file is there, else in `$TAML_IMAGE_DIR` or ../shared/data/images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from transfer_automl.errors import ConfigError
from transfer_automl.space import get_space
from transfer_automl.study.backends import Backend, Reference

IMAGE_SPACE = "taml-image"
DEFAULT_TEXT_SPACE = "taml-text"


def wants_image_backend(tasks: tuple[str, ...], space: str | None, data_dir: str | None) -> bool:
    from transfer_automl.tasks.images import is_image_task

    if space == IMAGE_SPACE:
        return True
    return bool(tasks) and all(is_image_task(t, data_dir) or is_image_task(t) for t in tasks)


def image_backend(tasks: tuple[str, ...], space: str | None, data_dir: str | None, cache_dir: str | Path,
                  budget_scale: float, timeout_s: float | None = None) -> Backend:
    from transfer_automl.children.images import ImageChildTrainer
    from transfer_automl.children.spec import child_spec
    from transfer_automl.children.trainer import ChildTrainerConfig
    from transfer_automl.tasks.features import FeatureCache
    from transfer_automl.tasks.images import image_dir, is_image_task, load_image_task
    from transfer_automl.tasks.registry import absolute_location

    if not tasks:
        raise ConfigError("tasks: give at least one image task")
    search_space = get_space(IMAGE_SPACE if space in (None, DEFAULT_TEXT_SPACE) else space)
    if search_space.has_conditions:
        raise ConfigError(f"space {search_space.name!r} has conditional decisions; the image child trainer needs every decision")
    child_spec({d.name: d.choices[0] for d in search_space.decisions}, budget_scale, batch_size=100)
    loaded = [load_image_task(name, data_dir if is_image_task(name, data_dir) else None) for name in tasks]
    config = ChildTrainerConfig(budget_scale=budget_scale, timeout_s=timeout_s)
    return Backend(
        space=search_space, task_names=[t.name for t in loaded],
        trainer=ImageChildTrainer(config, FeatureCache(cache_dir)),
        task_objects={t.name: t for t in loaded},
        references={t.name: Reference("majority class", _majority(t, "validation"), _majority(t, "test"))
                    for t in loaded},
        data_location=str(Path(loaded[0].source).parent if loaded[0].source else image_dir(data_dir)),
        trainer_settings=config.to_dict(),
        data_record={"data_dir": absolute_location(Path(loaded[0].source).parent if loaded[0].source
                                                   else image_dir(data_dir)),
                     "files": {t.name: {"path": absolute_location(t.source), "content_hash": t.content_hash}
                               for t in loaded}, "bundled_samples": False},
    )


def _majority(task, split: str) -> float:
    """Accuracy of always predicting the most frequent training label."""
    majority = np.bincount(task.labels[task.splits["train"]], minlength=task.num_classes).argmax()
    return float((task.labels[task.splits[split]] == majority).mean())

"""task_distance: rank the source search's tasks against the target tasks; writes distance.parquet."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def task_distance(
    search_dir: str,
    target_tasks: list,
    source_search: str,
    distance: str,
    select: str,
    repeats: int,
    settings: dict,
    probe_trials: int,
) -> dict:
    """{target: chosen source tasks, closest first}; d[source, target] in search_dir/distance.parquet.
    settings: the new search's (its seed, and data_dir, table, metric_columns when given).
    settings.transfer auto: nothing to measure (the task history's sources are weighed as the search runs)."""
    from transfer_automl.steps.transfer_steps import task_distance as step

    return step(
        search_dir, tuple(target_tasks), source_search, distance=distance, select=select, repeats=repeats,
        seed=int(settings.get("seed", 0)), data_dir=settings.get("data_dir") or None,
        table=settings.get("table") or None, metric_columns=tuple(settings.get("metric_columns", ())),
        probe_trials=probe_trials, transfer=settings.get("transfer", "none"),
    )

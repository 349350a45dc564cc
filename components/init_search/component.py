"""init_search: create the search in search_dir (or continue it); outputs the round to start at."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def init_search(
    search_dir: str,
    tasks: list,
    method: str,
    space: str,
    seed: int,
    children_per_round: int,
    benchmark: str,
    table: str,
    metric_columns: list,
    data_dir: str,
    budget_scale: float,
    search_id: str,
    init_from: str,
    source: str,
) -> int:
    """Empty strings stand for "not given" (KFP parameters have no None)."""
    from transfer_automl.steps.pipeline_steps import init_search as step

    return step(
        search_dir, tuple(tasks), method, space or None, seed, children_per_round=children_per_round,
        benchmark=benchmark or None, table=table or None, metric_columns=tuple(metric_columns),
        data_dir=data_dir or None, budget_scale=budget_scale, search_id=search_id or None,
        init_from=init_from, source=source or None,
    )

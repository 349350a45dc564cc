"""transfer_init: create the target tasks' search from the source search (warm start or reduced space)."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def transfer_init(
    search_dir: str,
    target_tasks: list,
    source_search: str,
    sources: dict,
    mode: str,
    embedding: str,
    children_per_round: int,
    seed: int,
    search_id: str,
    method: str,
    top_k: int,
    mixing_gamma: float,
    mixing_samples: int,
    data_dir: str,
    table: str,
    metric_columns: list,
) -> int:
    """The round the pipeline starts at (0 for a new search). Empty strings stand for "not given"."""
    from transfer_automl.steps.transfer_steps import transfer_init as step

    return step(
        search_dir, tuple(target_tasks), source_search, sources, mode=mode, embedding=embedding,
        children_per_round=children_per_round, seed=seed, search_id=search_id or None, method=method or None,
        top_k=top_k, mixing_gamma=mixing_gamma, mixing_samples=mixing_samples, data_dir=data_dir or None,
        table=table or None, metric_columns=tuple(metric_columns),
    )

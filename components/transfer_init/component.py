"""transfer_init: create the target tasks' search from the source search (warm start or reduced space)."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def transfer_init(
    search_dir: str,
    target_tasks: list,
    source_search: str,
    sources: dict,
    settings: dict,
    mode: str,
    top_k: int,
    children_per_round: int,
    rounds: int,
) -> int:
    """The round the pipeline starts at (0 for a new search). settings: the new search's
    SearchSettings fields (seed, embedding, mixing_gamma, ...); the source's are inherited."""
    from transfer_automl.steps.transfer_steps import transfer_init as step

    return step(search_dir, tuple(target_tasks), source_search, sources, settings, mode=mode, top_k=top_k,
                children_per_round=children_per_round, rounds=rounds)

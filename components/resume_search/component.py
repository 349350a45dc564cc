"""resume_search: find the newest search for a set of tasks and continue it from its checkpoint."""

from typing import NamedTuple

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def resume_search(search_root: str, tasks: list, children_per_round: int, rounds: int) -> NamedTuple(
        "Resumed", search_dir=str, round_index=int):
    """search_root: a search directory, or a directory of searches (the newest for `tasks` is taken)."""
    from transfer_automl.steps.retraining_steps import resume_search as step

    search_dir, round_index = step(search_root, tuple(tasks), children_per_round, rounds)
    return (search_dir, round_index)

"""init_search: create the search in search_dir (or continue it); outputs the round to start at."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def init_search(search_dir: str, settings: dict, children_per_round: int, rounds: int, max_trials: int = 0) -> int:
    """settings: one mapping of SearchSettings fields (tasks, method, seed, ...), checked by the
    same dataclass as `taml search`'s flags; the pipeline's shape sets trials and batch size.
    max_trials > 0: the budget of a search that runs in windows of `rounds` rounds."""
    from transfer_automl.steps.pipeline_steps import init_search as step

    return step(search_dir, settings, children_per_round, rounds, max_trials)

"""controller_step: ask the search for one round's trials (one per child)."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def controller_step(search_dir: str, round_index: int, children: int) -> list:
    """The round's trials: [{trial_id, search_id, task, task_index, controller_step, index, actions, config}]."""
    from transfer_automl.steps.pipeline_steps import controller_step as step

    return step(search_dir, round_index, children)

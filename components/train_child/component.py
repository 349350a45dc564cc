"""train_child: train (or look up) one child for one (task, config); outputs its ledger row.

GPU, CPU/memory limits, node selector, toleration and retries are set on the task in the
pipelines (pipelines/rounds.py: child_resources), not here.
"""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_child(search_dir: str, trial: dict) -> dict:
    """Idempotent: a result already in search_dir for this trial id is returned, not retrained."""
    from transfer_automl.steps.pipeline_steps import train_child as step

    return step(search_dir, trial)

"""train_pack: train (or look up) a pack of children together on one GPU; outputs their ledger rows.

One pack per GPU pod (children/packing.py stacks same-shape children into one model). The image
is the CUDA trainer's (taml-trainer-gpu); on a CPU-only cluster the pipelines set the runtime
image on the task (pipelines/rounds.py: child_resources), as they set the GPU request, node
selector, toleration, limits and retries.
"""

from typing import Any

from kfp import dsl

from components.image import TRAINER_GPU_IMAGE


@dsl.component(base_image=TRAINER_GPU_IMAGE, install_kfp_package=False)
def train_pack(search_dir: str, pack_item: dict[str, Any]) -> list[dict[str, Any]]:
    """Idempotent: a result already in search_dir for a trial id is returned, not retrained."""
    from transfer_automl.steps.pipeline_steps import train_pack as step

    return step(search_dir, pack_item)

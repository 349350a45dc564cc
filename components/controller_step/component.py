"""controller_step: ask the search for one round's trials, split into packs (one per GPU pod)."""

from typing import Any

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def controller_step(search_dir: str, round_index: int, children: int, packs: int) -> list[dict[str, Any]]:
    """[{round_index, pack_index, trials: [{trial_id, search_id, task, ...}]}]: typed as a list of
    dicts, so the ParallelFor item is a STRUCT, as train_pack's `pack_item` input (the KFP v2 driver
    refuses a STRING item for a STRUCT input: tests/pipelines/test_ir_types.py)."""
    from transfer_automl.steps.pipeline_steps import round_packs as step

    return step(search_dir, round_index, children, packs)

"""The container images the components run in; the one place that names them.

`make images REGISTRY=... TAG=...` builds them (images/runtime, images/trainer-gpu) and
`make pipelines REGISTRY=... TAG=...` compiles the pipelines against the same names: both pass
TAML_IMAGE_REGISTRY and TAML_IMAGE_TAG. The defaults are the released images (the tag follows the
project version); the checked-in pipeline YAML uses them.
"""


def _setting(name: str, default: str) -> str:
    import os  # inside: this module imports nothing at module level (tests/components)

    return os.environ.get(name) or default


REGISTRY = _setting("TAML_IMAGE_REGISTRY", "ghcr.io/transfer-automl")
TAG = _setting("TAML_IMAGE_TAG", "0.1.0")

# CPU steps: init_search, controller_step, aggregate_rewards, task_distance, transfer_init, report.
RUNTIME_IMAGE = f"{REGISTRY}/taml-runtime:{TAG}"
# train_pack (the child trainer) on GPU nodes: CUDA build of torch; every pod that asks for a GPU.
TRAINER_GPU_IMAGE = f"{REGISTRY}/taml-trainer-gpu:{TAG}"
# The image of every component that does not say otherwise.
IMAGE = RUNTIME_IMAGE

"""register_champion: offer each task's best child to the MLflow Model Registry (alias `champion`)."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register_champion(search_dir: str, summary: dsl.Output[dsl.Markdown]) -> dict:
    """{task: registered model version and whether the champion alias moved}; MLflow from MLFLOW_TRACKING_URI."""
    from transfer_automl.steps.retraining_steps import register_champion as step

    out = step(search_dir)
    with open(summary.path, "w") as f:
        f.write(out["markdown"])
    return out["tasks"]

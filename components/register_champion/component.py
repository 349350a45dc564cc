"""register_champion: refit each task's best configurations and offer the champion to the MLflow Model Registry
(alias `champion`)."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register_champion(search_dir: str, summary: dsl.Output[dsl.Markdown], refit: str = "topk",
                      refit_k: int = 3) -> dict:
    """{task: registered model version and whether the champion alias moved}; MLflow from MLFLOW_TRACKING_URI.
    refit: none, best, topk or ensemble (refit_k configurations per task at the full budget; study/refit.py)."""
    from transfer_automl.steps.retraining_steps import register_champion as step

    out = step(search_dir, refit, refit_k)
    with open(summary.path, "w") as f:
        f.write(out["markdown"])
    return out["tasks"]

"""batch_predict: label a dataset in S3 (Parquet, CSV or JSON Lines) with a registered champion."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def batch_predict(model_uri: str, input_uri: str, output_uri: str, summary: dsl.Output[dsl.Markdown],
                  column: str = "text", rows_per_batch: int = 1024) -> dict:
    """Writes output_uri (row, label, prob_<class>...); returns {"rows", "labels", "output_uri"}.
    The model (models:/taml-<task>@champion) is loaded from MLFLOW_TRACKING_URI's registry."""
    from transfer_automl.steps.serving_steps import batch_predict as step

    out = step(model_uri, input_uri, output_uri, column=column, batch_size=rows_per_batch)
    with open(summary.path, "w") as f:
        f.write(out.pop("markdown"))
    return out

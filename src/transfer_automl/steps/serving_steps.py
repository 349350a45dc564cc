"""The batch_predict step: score a dataset (Parquet, CSV or JSON Lines; local or s3://) with a
registered champion into a Parquet file of predictions (serving/predict.py). What the
`batch_predict` component calls; MLflow's registry comes from MLFLOW_TRACKING_URI, as for every step.
A rerun replaces its own output, so a retried step gives the same file."""

from __future__ import annotations

from typing import Any


def batch_predict(model_uri: str, input_uri: str, output_uri: str, column: str = "text",
                  batch_size: int = 1024) -> dict[str, Any]:
    """{"rows", "labels": {label: rows}, "output_uri", "markdown"} after writing `output_uri`."""
    from transfer_automl.serving.predict import predict_file

    summary = predict_file(model_uri, input_uri, output_uri, column=column, batch_size=batch_size, force=True)
    lines = [f"# Batch prediction with `{model_uri}`", "",
             f"{summary.rows} rows of `{input_uri}` (column `{column}`) -> `{output_uri}` in {summary.seconds:.1f} s",
             "", "| label | rows |", "|---|---|", *(f"| {label} | {n} |" for label, n in summary.labels.items())]
    return {"rows": summary.rows, "labels": summary.labels, "output_uri": summary.out, "markdown": "\n".join(lines) + "\n"}

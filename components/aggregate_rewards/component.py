"""aggregate_rewards: commit a round to the ledger, update the controller, report it."""

from typing import Any

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def aggregate_rewards(
    search_dir: str,
    round_index: int,
    results: list[list[dict[str, Any]]],  # the packs' rows (dsl.Collected over the packs)
    metrics: dsl.Output[dsl.Metrics],
    summary: dsl.Output[dsl.Markdown],
) -> int:
    """Outputs the next round's index; logs to MLflow (MLFLOW_TRACKING_URI, else the search's own store)."""
    from transfer_automl.steps.pipeline_steps import aggregate_rewards as step

    out = step(search_dir, round_index, results)
    for name, value in sorted(out["metrics"].items()):
        metrics.log_metric(name, value)
    with open(summary.path, "w") as f:
        f.write(out["markdown"])
    return out["next_round"]

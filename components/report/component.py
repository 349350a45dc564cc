"""report: the search's HTML report (the papers' figures from its ledger) as a Kubeflow HTML artifact."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def report(search_dir: str, html: dsl.Output[dsl.HTML]):
    """Rendered by transfer_automl.report; the Kubeflow UI shows it in the run's visualizations, and
    with MLflow configured (MLFLOW_TRACKING_URI) it is logged to the search's controller run too."""
    from transfer_automl.steps.report_steps import report_step

    report_step(search_dir, html.path)

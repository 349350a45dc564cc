"""report: the search's HTML report (the papers' figures from its ledger) as a Kubeflow HTML artifact."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def report(search_dir: str, html: dsl.Output[dsl.HTML]):
    """Rendered by transfer_automl.report; the Kubeflow UI shows it in the run's visualizations."""
    from transfer_automl.steps.report_steps import render_report

    render_report(search_dir, html.path)

"""continue_search: after a window's rounds, submit the next window while the budget lasts."""

from typing import Any

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def continue_search(search_dir: str, settings: dict[str, Any], max_trials: int, run_id: str, refit: str = "topk",
                    refit_k: int = 3) -> dict[str, Any]:
    """{status: single-run | done | submitted | continued, step, next_run}; the store records who
    continued from which round, so a retried or doubled window submits the next one at most once.
    The Kubeflow Pipelines API: $TAML_KFP_HOST (taml-endpoints ConfigMap), kfp.Client's credentials.
    refit, refit_k: this run's, passed on to the next window (its register_champion step)."""
    from transfer_automl.steps.pipeline_steps import continue_search as step

    return step(search_dir, settings, max_trials, run_id, passed_on={"refit": refit, "refit_k": refit_k})

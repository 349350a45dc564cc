"""scheduled_retraining: continue the newest search for a set of tasks, register the champions.

    resume_search -> rounds: [controller_step -> ParallelFor(train_pack) -> aggregate_rewards] x rounds
                  -> register_champion -> report

(the rounds are a nested pipeline, since search_dir is resume_search's output: pipelines/rounds.py)

Meant for a recurring run (`taml pipeline schedule scheduled_retraining --cron "0 3 * * *" ...`):
each run finds the newest search for `tasks` under `search_root` (or takes `search_root` itself
when it is a search), adds `rounds` rounds from its checkpoint, and offers each task's best
child to the MLflow Model Registry, where the alias `champion` moves only to a better model.

    python pipelines/scheduled_retraining/pipeline.py OUT_DIR   # writes OUT_DIR/scheduled_retraining.yaml
"""

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # loaded by path (taml pipeline compile): make components importable
    sys.path.insert(0, str(_REPO))

from kfp import compiler, dsl  # noqa: E402

from components.resume_search.component import resume_search  # noqa: E402
from pipelines.rounds import finish_and_report, rounds_pipeline, state_step  # noqa: E402

NAME = "scheduled_retraining"
DEFAULT_ROUNDS = 2
DEFAULT_CHILDREN_PER_ROUND = 4


def build_pipeline(rounds: int = DEFAULT_ROUNDS, children_per_round: int = DEFAULT_CHILDREN_PER_ROUND,
                   gpu: bool = True, parallelism: int | None = None):
    """As multitask_search.build_pipeline; children_per_round must be the continued search's."""

    more_rounds = rounds_pipeline(rounds, children_per_round, gpu, parallelism)  # built outside: no nesting of definitions

    @dsl.pipeline(name="scheduled-retraining",
                  description=f"Continue the newest search for a set of tasks by {rounds} rounds x "
                              f"{children_per_round} children, then register the champions.")
    def scheduled_retraining(
        search_root: str,
        tasks: list = [],  # noqa: B006  (KFP takes a pipeline parameter's default from the signature)
        refit: str = "topk",  # champions: none, best, topk or ensemble (study/refit.py)
        refit_k: int = 3,
    ):
        resumed = state_step(resume_search(search_root=search_root, tasks=tasks, children_per_round=children_per_round,
                                           rounds=rounds), "resume-search")
        search_dir = resumed.outputs["search_dir"]
        more = more_rounds(search_dir=search_dir, start_round=resumed.outputs["round_index"])
        more.set_display_name("rounds").set_caching_options(False)  # its steps set their own policies
        finish_and_report(search_dir, more, refit, refit_k)

    return scheduled_retraining


scheduled_retraining = build_pipeline()


def compile_all(out_dir: str | Path) -> list[Path]:
    """Write <out_dir>/scheduled_retraining.yaml (the default rounds and children); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{NAME}.yaml"
    compiler.Compiler().compile(scheduled_retraining, str(path))
    return [path]


if __name__ == "__main__":
    for written in compile_all(sys.argv[1] if len(sys.argv) > 1 else _REPO / "pipelines" / "compiled"):
        print(written)

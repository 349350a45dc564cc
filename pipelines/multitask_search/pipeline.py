"""multitask_search: the multitask search as a Kubeflow pipeline.

    init_search -> [controller_step -> ParallelFor(train_child) -> aggregate_rewards] x rounds
                -> register_champion (Study.finish) -> report

`settings` is one mapping of the search's settings (transfer_automl.study.SearchSettings: tasks,
method, method_options, seed, controller_lr, ...), checked by the same dataclass as the flags of
`taml search`; every setting of the command line can be set here. The pipeline's shape (--rounds,
--children) sets trials and batch size.

The rounds are unrolled when the pipeline is built (pipelines/rounds.py). A run that continues a
search (init_from=resume, same search_dir) starts at the checkpoint's step, so a long search runs
as a chain of runs. The state lives in search_dir (see transfer_automl.steps.pipeline_steps);
every step is idempotent, so retried children and cached tasks never count twice.

    python pipelines/multitask_search/pipeline.py OUT_DIR   # writes OUT_DIR/multitask_search.yaml
"""

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # loaded by path (taml pipeline compile): make components importable
    sys.path.insert(0, str(_REPO))

from kfp import compiler, dsl  # noqa: E402

from components.init_search.component import init_search  # noqa: E402
from pipelines.rounds import finish_and_report, search_rounds, state_step  # noqa: E402

NAME = "multitask_search"
DEFAULT_ROUNDS = 3
DEFAULT_CHILDREN_PER_ROUND = 4


def build_pipeline(rounds: int = DEFAULT_ROUNDS, children_per_round: int = DEFAULT_CHILDREN_PER_ROUND,
                   gpu: bool = True, parallelism: int | None = None):
    """The pipeline function for `rounds` rounds of `children_per_round` children each.

    gpu=False leaves out the GPU request, node selector and toleration of train_child (for a
    CPU-only cluster or a local run); CPU/memory limits and retries stay. parallelism: children
    trained at once (default: all of a round; `taml cluster doctor` suggests one from the GPUs).
    """

    @dsl.pipeline(name="multitask-search",
                  description=f"Multitask architecture search: {rounds} rounds x {children_per_round} children.")
    def multitask_search(
        search_dir: str,
        # One key: kfp writes a dict default's keys in hash order, and the compiled YAML must not vary.
        settings: dict = {"tasks": []},  # noqa: B006  (KFP reads defaults from the signature)
    ):
        init = state_step(init_search(search_dir=search_dir, settings=settings, children_per_round=children_per_round,
                                      rounds=rounds), "init-search")
        last = search_rounds(search_dir, init.output, rounds, children_per_round, gpu, parallelism)
        finish_and_report(search_dir, last)

    return multitask_search


multitask_search = build_pipeline()


def compile_all(out_dir: str | Path) -> list[Path]:
    """Write <out_dir>/multitask_search.yaml (the default rounds and children); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{NAME}.yaml"
    compiler.Compiler().compile(multitask_search, str(path))
    return [path]


if __name__ == "__main__":
    for written in compile_all(sys.argv[1] if len(sys.argv) > 1 else _REPO / "pipelines" / "compiled"):
        print(written)

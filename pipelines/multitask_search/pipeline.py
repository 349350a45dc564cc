"""multitask_search: the multitask search as a Kubeflow pipeline.

    init_search -> [controller_step -> ParallelFor(train_pack) -> aggregate_rewards] x rounds
                -> continue_search -> register_champion (Study.finish) -> report

`settings` is one mapping of the search's settings (transfer_automl.study.SearchSettings: tasks,
method, method_options, seed, controller_lr, ...), checked by the same dataclass as the flags of
`taml search`; every setting of the command line can be set here. The pipeline's shape (--rounds,
--children) sets trials and batch size.

A run is a window of `rounds` rounds (unrolled when the pipeline is built: pipelines/rounds.py),
so the YAML does not grow with the budget. `max_trials` (a run-time parameter; 0: just this run's
rounds) is the whole budget: while rounds are left, continue_search submits the next window, one
more run of the same pipeline version with init_from=resume, and the chain runs until max_trials
is reached from one submit. A window past the budget runs empty rounds (one empty pack each: no
child trains). The ledger in search_dir decides what has run, so a retried or doubled window never
runs a round twice (steps.pipeline_steps.continue_search). The state lives in search_dir (see
transfer_automl.steps.pipeline_steps); every step is idempotent, so retried children and cached
tasks never count twice.

    python pipelines/multitask_search/pipeline.py OUT_DIR   # writes OUT_DIR/multitask_search.yaml
"""

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # loaded by path (taml pipeline compile): make components importable
    sys.path.insert(0, str(_REPO))

from kfp import compiler, dsl  # noqa: E402

from components.continue_search.component import continue_search  # noqa: E402
from components.init_search.component import init_search  # noqa: E402
from pipelines.rounds import finish_and_report, search_rounds, state_step  # noqa: E402

NAME = "multitask_search"
DEFAULT_ROUNDS = 3  # rounds per run (a window); at most MAX_WINDOW
DEFAULT_CHILDREN_PER_ROUND = 4
MAX_WINDOW = 10  # rounds unrolled into one run: ~12.5 KB of YAML each, well under etcd's 1.5 MiB


def build_pipeline(rounds: int = DEFAULT_ROUNDS, children_per_round: int = DEFAULT_CHILDREN_PER_ROUND,
                   gpu: bool = True, parallelism: int | None = None, max_trials: int = 0):
    """The pipeline function for `rounds` rounds of `children_per_round` children each.

    gpu=False leaves out the GPU request, node selector and toleration of train_pack (and its CUDA image) (for a
    CPU-only cluster or a local run); CPU/memory limits and retries stay. parallelism: GPUs at
    once, one pack of children each (default: one child per pack; `taml cluster doctor` suggests
    one from the GPUs). max_trials: the default of the run-time parameter of the same name (the
    whole budget; 0: this run's rounds only); it changes one number in the YAML, nothing else.
    """
    if rounds > MAX_WINDOW:
        raise ValueError(f"rounds: a run holds at most {MAX_WINDOW} rounds, got {rounds}; give the budget as "
                         "max_trials and the search continues itself window by window")
    if max_trials < 0:
        raise ValueError(f"max_trials must be >= 0, got {max_trials}")

    @dsl.pipeline(name="multitask-search",
                  description=f"Multitask architecture search: {rounds} rounds x {children_per_round} children.")
    def multitask_search(
        search_dir: str,
        # One key: kfp writes a dict default's keys in hash order, and the compiled YAML must not vary.
        settings: dict = {"tasks": []},  # noqa: B006  (KFP reads defaults from the signature)
        max_trials: int = max_trials,
        refit: str = "topk",  # champions: none, best, topk or ensemble (study/refit.py)
        refit_k: int = 3,
    ):
        init = state_step(init_search(search_dir=search_dir, settings=settings, children_per_round=children_per_round,
                                      rounds=rounds, max_trials=max_trials), "init-search")
        last = search_rounds(search_dir, init.output, rounds, children_per_round, gpu, parallelism)
        more = state_step(continue_search(search_dir=search_dir, settings=settings, max_trials=max_trials,
                                          run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, refit=refit,
                                          refit_k=refit_k).after(last), "continue-search")
        finish_and_report(search_dir, more, refit, refit_k)

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

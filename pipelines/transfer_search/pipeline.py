"""transfer_search: a search for new tasks that starts from a previous search.

    task_distance -> transfer_init -> [controller_step -> ParallelFor(train_pack) -> aggregate_rewards] x rounds -> report

task_distance ranks the source search's tasks against each target (distance.parquet in
search_dir) and chooses the closest; transfer_init starts the target tasks' search from the
source's controller (mode warm_start: each target's task embedding from its closest source's) or
as a fresh search over the closest sources' top configurations (mode reduce_space); the rounds
are the multitask search's. See transfer_automl.steps.transfer_steps.

With settings {"transfer": "auto", "history": URI} no source_search is needed: transfer_init
opens `taml search --transfer auto` over the task history at URI (a directory the pods share or
an s3:// prefix; the shipped starter history after it): rank-ensemble over the earlier searches of
the same space, a scratch search without any. Every pipeline's finished search is recorded in its
settings' `history` (register_champion: Study.finish); multitask_search takes it the same way.

    python pipelines/transfer_search/pipeline.py OUT_DIR   # writes OUT_DIR/transfer_search.yaml
"""

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # loaded by path (taml pipeline compile): make components importable
    sys.path.insert(0, str(_REPO))

from kfp import compiler, dsl  # noqa: E402

from components.task_distance.component import task_distance  # noqa: E402
from components.transfer_init.component import transfer_init  # noqa: E402
from pipelines.rounds import finish_and_report, search_rounds, state_step  # noqa: E402

NAME = "transfer_search"
DEFAULT_ROUNDS = 3
DEFAULT_CHILDREN_PER_ROUND = 4


def build_pipeline(rounds: int = DEFAULT_ROUNDS, children_per_round: int = DEFAULT_CHILDREN_PER_ROUND,
                   gpu: bool = True, parallelism: int | None = None):
    """As multitask_search.build_pipeline, for a transfer from `source_search` to `target_tasks`."""

    @dsl.pipeline(name="transfer-search",
                  description=f"Transfer a search to new tasks, then {rounds} rounds x {children_per_round} children.")
    def transfer_search(
        search_dir: str,
        target_tasks: list,
        source_search: str = "",
        distance: str = "fisher_ld",
        select: str = "closest",
        repeats: int = 3,
        probe_trials: int = 20,
        mode: str = "warm_start",
        top_k: int = 10,
        settings: dict = {"embedding": "closest"},  # noqa: B006  (one key: see multitask_search)
        refit: str = "topk",  # champions: none, best, topk or ensemble (study/refit.py)
        refit_k: int = 3,
    ):
        dist = state_step(task_distance(
            search_dir=search_dir, target_tasks=target_tasks, source_search=source_search, distance=distance,
            select=select, repeats=repeats, settings=settings, probe_trials=probe_trials,
        ), "task-distance")
        init = state_step(transfer_init(
            search_dir=search_dir, target_tasks=target_tasks, source_search=source_search, sources=dist.output,
            settings=settings, mode=mode, top_k=top_k, children_per_round=children_per_round, rounds=rounds,
        ), "transfer-init")
        last = search_rounds(search_dir, init.output, rounds, children_per_round, gpu, parallelism)
        finish_and_report(search_dir, last, refit, refit_k)

    return transfer_search


transfer_search = build_pipeline()


def compile_all(out_dir: str | Path) -> list[Path]:
    """Write <out_dir>/transfer_search.yaml (the default rounds and children); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{NAME}.yaml"
    compiler.Compiler().compile(transfer_search, str(path))
    return [path]


if __name__ == "__main__":
    for written in compile_all(sys.argv[1] if len(sys.argv) > 1 else _REPO / "pipelines" / "compiled"):
        print(written)

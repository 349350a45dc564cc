"""multitask_search: the multitask search as a Kubeflow pipeline.

KFP v2 has no loops, so the rounds are unrolled when the pipeline is built:

    init_search -> [controller_step -> ParallelFor(train_child) -> aggregate_rewards] x rounds

Each aggregate_rewards outputs the next round's index, which the next controller_step takes, so
the rounds run in order and a run that continues a search (init_from=resume, same search_dir)
starts at the checkpoint's step. The state lives in search_dir (see
transfer_automl.steps.pipeline_steps); every step is idempotent, so retried children and cached
tasks never count twice.

    python pipelines/multitask_search/pipeline.py OUT_DIR   # writes OUT_DIR/multitask_search.yaml
"""

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # loaded by path (taml pipeline compile): make components importable
    sys.path.insert(0, str(_REPO))

from kfp import compiler, dsl, kubernetes  # noqa: E402

from components.aggregate_rewards.component import aggregate_rewards  # noqa: E402
from components.controller_step.component import controller_step  # noqa: E402
from components.init_search.component import init_search  # noqa: E402
from components.train_child.component import train_child  # noqa: E402

NAME = "multitask_search"
DEFAULT_ROUNDS = 3
DEFAULT_CHILDREN_PER_ROUND = 4

# Where a child trains: one GPU on a GPU node. Kept here so a cluster overlay can see them.
GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")
CHILD_CPU_LIMIT = "4"
CHILD_MEMORY_LIMIT = "16G"
CHILD_RETRIES = 2


def build_pipeline(rounds: int = DEFAULT_ROUNDS, children_per_round: int = DEFAULT_CHILDREN_PER_ROUND,
                   gpu: bool = True):
    """The pipeline function for `rounds` rounds of `children_per_round` children each.

    gpu=False leaves out the GPU request, node selector and toleration of train_child (for a
    CPU-only cluster or a local run); CPU/memory limits and retries stay.
    """
    if rounds < 1 or children_per_round < 1:
        raise ValueError(f"rounds and children_per_round must be >= 1, got {rounds} and {children_per_round}")

    @dsl.pipeline(name="multitask-search",
                  description=f"Multitask architecture search: {rounds} rounds x {children_per_round} children.")
    def multitask_search(
        search_dir: str,
        tasks: list = [],  # noqa: B006  (KFP takes a pipeline parameter's default from the signature)
        method: str = "reinforce",
        space: str = "",
        seed: int = 0,
        benchmark: str = "",
        table: str = "",
        metric_columns: list = [],  # noqa: B006
        data_dir: str = "",
        budget_scale: float = 0.05,
        search_id: str = "",
        init_from: str = "scratch",
        source: str = "",
    ):
        init = init_search(
            search_dir=search_dir, tasks=tasks, method=method, space=space, seed=seed,
            children_per_round=children_per_round, benchmark=benchmark, table=table,
            metric_columns=metric_columns, data_dir=data_dir, budget_scale=budget_scale,
            search_id=search_id, init_from=init_from, source=source,
        ).set_caching_options(False).set_display_name("init-search")
        round_index = init.output
        for r in range(rounds):
            ask = controller_step(search_dir=search_dir, round_index=round_index, children=children_per_round)
            ask.set_caching_options(False).set_display_name(f"round-{r}-controller")
            with dsl.ParallelFor(ask.output, parallelism=children_per_round) as trial:
                child = train_child(search_dir=search_dir, trial=trial)
                _child_resources(child.set_display_name(f"round-{r}-child"), gpu)
            agg = aggregate_rewards(search_dir=search_dir, round_index=round_index,
                                    results=dsl.Collected(child.output))
            agg.set_caching_options(False).set_display_name(f"round-{r}-aggregate")
            round_index = agg.outputs["Output"]

    return multitask_search


def _child_resources(task: dsl.PipelineTask, gpu: bool) -> None:
    task.set_cpu_limit(CHILD_CPU_LIMIT).set_memory_limit(CHILD_MEMORY_LIMIT)
    task.set_retry(num_retries=CHILD_RETRIES, backoff_duration="30s", backoff_factor=2)
    if gpu:
        task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(1)
        kubernetes.add_node_selector(task, label_key=GPU_NODE_LABEL[0], label_value=GPU_NODE_LABEL[1])
        kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")


multitask_search = build_pipeline()


def compile_all(out_dir: str | Path) -> list[Path]:
    """Write <out_dir>/multitask_search.yaml (the default rounds and children); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{NAME}.yaml"
    compiler.Compiler().compile(multitask_search, str(path))
    return [path]


if __name__ == "__main__":
    for written in compile_all(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent):
        print(written)

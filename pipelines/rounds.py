"""What every search pipeline shares: the unrolled rounds, where a child runs, what every pod
gets from the cluster, and the report.

KFP v2 has no loops, so `search_rounds` unrolls `rounds` rounds when the pipeline is built:

    [controller_step -> ParallelFor(train_pack) -> aggregate_rewards] x rounds

controller_step splits a round's children into packs, one per GPU (`parallelism`, default one
child per pack); each train_pack pod trains its pack together on one GPU (children/packing.py),
in the CUDA image. Each aggregate_rewards outputs the next round's index, which the next controller_step takes, so
the rounds run in order and a search continued from its checkpoint starts where it stopped.

Caching and retries, deliberately:
* Steps that read or write the search's state in search_dir (init, controller, aggregate,
  transfer, resume, distance, report, champion) never come from the cache: a cached output would
  skip the state change or report a state that has moved on. They are idempotent, so they are
  retried once (a storage or API hiccup), after 10 s.
* train_pack is cached and retried twice with exponential backoff from 30 s: a pack's inputs
  (search_dir, trial ids, configs) fix its results, and a retried pack returns the results already
  written for its trial ids, so neither a cache hit nor a retry counts a trial twice.
"""

from kfp import dsl, kubernetes

from components.aggregate_rewards.component import aggregate_rewards
from components.controller_step.component import controller_step
from components.image import RUNTIME_IMAGE, TRAINER_GPU_IMAGE
from components.register_champion.component import register_champion
from components.report.component import report
from components.train_pack.component import train_pack

# Where a child trains: one GPU on a GPU node. Kept here so a cluster admin can see them.
GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")
CHILD_CPU_LIMIT = "4"
CHILD_MEMORY_LIMIT = "16G"
CHILD_RETRIES = 2
# GPU queueing: Kueue's pod integration admits a labelled pod through the LocalQueue and orders it
# by the WorkloadPriorityClass (manifests/README.md); without Kueue the labels do nothing. KFP
# 2.17 has no per-task priorityClassName, so this is how the PriorityClass of the GPU pods is set.
GPU_QUEUE_LABEL = ("kueue.x-k8s.io/queue-name", "taml-gpu")
GPU_PRIORITY_LABEL = ("kueue.x-k8s.io/priority-class", "taml-gpu-training")
STEP_RETRIES = 1


# What every step's pod gets (manifests/README.md): the endpoints from the ConfigMap, the object
# store's keys from the Secret (optional: with IRSA there is none), and the images' non-root user.
ENDPOINTS_CONFIGMAP = "taml-endpoints"
ENDPOINTS_ENV = ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "TAML_BUCKET", "TAML_ARTIFACT_ROOT",
                 "TAML_KFP_HOST")
S3_SECRET = "taml-s3-credentials"
S3_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
IMAGE_USER = 10001  # images/*/Dockerfile


def cluster_env(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Endpoints and credentials from the cluster, never from pipeline parameters; non-root."""
    kubernetes.use_config_map_as_env(task, ENDPOINTS_CONFIGMAP, {k: k for k in ENDPOINTS_ENV})
    kubernetes.use_secret_as_env(task, S3_SECRET, {k: k for k in S3_SECRET_ENV}, optional=True)
    kubernetes.set_security_context(task, run_as_user=IMAGE_USER, run_as_group=IMAGE_USER, run_as_non_root=True)
    return task


def state_step(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    """A step that reads or writes search state: named, never cached, retried once."""
    task.set_display_name(name).set_caching_options(False).set_retry(num_retries=STEP_RETRIES, backoff_duration="10s")
    return cluster_env(task)


def search_rounds(search_dir, start_round, rounds: int, children_per_round: int, gpu: bool = True,
                  parallelism: int | None = None) -> dsl.PipelineTask:
    """Add `rounds` rounds from `start_round` (a task output); returns the last aggregate task.

    parallelism: the GPUs the search holds at once. A round's children are split into that many
    packs (default: one child per pack), one pack per pod, all of them at once."""
    if rounds < 1 or children_per_round < 1:
        raise ValueError(f"rounds and children_per_round must be >= 1, got {rounds} and {children_per_round}")
    if parallelism is not None and parallelism < 1:
        raise ValueError(f"parallelism must be >= 1, got {parallelism}")
    packs = min(parallelism or children_per_round, children_per_round)
    round_index = start_round
    for r in range(rounds):
        ask = controller_step(search_dir=search_dir, round_index=round_index, children=children_per_round, packs=packs)
        state_step(ask, f"round-{r}-controller")
        with dsl.ParallelFor(ask.output, parallelism=packs) as pack:
            child = train_pack(search_dir=search_dir, pack_item=pack)
            child_resources(child.set_display_name(f"round-{r}-pack"), gpu)
        agg = aggregate_rewards(search_dir=search_dir, round_index=round_index, results=dsl.Collected(child.output))
        state_step(agg, f"round-{r}-aggregate")
        round_index = agg.outputs["Output"]
    return agg


def rounds_pipeline(rounds: int, children_per_round: int, gpu: bool = True, parallelism: int | None = None):
    """`search_rounds` as a nested pipeline taking search_dir and start_round as its inputs: for
    a pipeline whose search_dir is a task's output. (Inside the rounds, search_dir must be an input
    of the enclosing DAG: kfp.local's ParallelFor replaces every task output that enters the loop
    body with the loop item, so a task output may not go into the loop directly.)"""

    @dsl.pipeline(name="search-rounds", description=f"{rounds} rounds x {children_per_round} children.")
    def search_rounds_pipeline(search_dir: str, start_round: int):
        search_rounds(search_dir, start_round, rounds, children_per_round, gpu, parallelism)

    return search_rounds_pipeline


def child_resources(task: dsl.PipelineTask, gpu: bool) -> None:
    """CPU/memory limits and retries; with gpu, one GPU on a GPU node (selector + toleration) in
    the CUDA image, queued through Kueue with the GPU priority class (labels), else the CPU
    runtime image."""
    cluster_env(task)
    task.set_container_image(TRAINER_GPU_IMAGE if gpu else RUNTIME_IMAGE)
    task.set_cpu_limit(CHILD_CPU_LIMIT).set_memory_limit(CHILD_MEMORY_LIMIT)
    task.set_retry(num_retries=CHILD_RETRIES, backoff_duration="30s", backoff_factor=2)
    if gpu:
        task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(1)
        kubernetes.add_node_selector(task, label_key=GPU_NODE_LABEL[0], label_value=GPU_NODE_LABEL[1])
        kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
        for key, value in (GPU_QUEUE_LABEL, GPU_PRIORITY_LABEL):
            kubernetes.add_pod_label(task, key, value)


def search_report(search_dir, after: dsl.PipelineTask) -> dsl.PipelineTask:
    """The HTML report of the search, once `after` is done."""
    return state_step(report(search_dir=search_dir).after(after), "report")


def finish_and_report(search_dir, after: dsl.PipelineTask, refit, refit_k) -> dsl.PipelineTask:
    """The search's end once `after` is done: `Study.finish` (summary, files, the champions refit
    as `refit`/`refit_k` say and registered in the model registry), then the report."""
    finish = state_step(register_champion(search_dir=search_dir, refit=refit, refit_k=refit_k).after(after),
                        "register-champion")
    return search_report(search_dir, finish)

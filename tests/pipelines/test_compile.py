"""Every pipeline compiles, its checked-in YAML (pipelines/compiled/) is what it compiles to, and
that YAML loads back with kfp."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

COMPILED = REPO / "pipelines" / "compiled"
PIPELINES = ["multitask_search", "scheduled_retraining", "transfer_search"]
_VOLATILE = ("sdkVersion",)  # differs between kfp patch releases, not between pipelines


def _documents(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for doc in docs:
        for key in _VOLATILE:
            doc.pop(key, None)
    return docs


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline, root and nested (ParallelFor bodies), by display name."""
    out = {}
    for dag in [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]:
        for task in dag["tasks"].values():
            out[task["taskInfo"]["name"]] = task
    return out


def test_every_pipeline_directory_is_listed():
    assert sorted(p.parent.name for p in (REPO / "pipelines").glob("*/pipeline.py")) == PIPELINES
    assert sorted(p.stem for p in COMPILED.glob("*.yaml")) == PIPELINES


@pytest.mark.parametrize("name", PIPELINES)
def test_compiled_pipeline_matches_the_checked_in_yaml_and_loads_back(tmp_path, name):
    from kfp import components

    module = importlib.import_module(f"pipelines.{name}.pipeline")
    written = module.compile_all(tmp_path)
    assert [p.name for p in written] == [f"{name}.yaml"]
    checked_in = COMPILED / f"{name}.yaml"
    assert _documents(written[0]) == _documents(checked_in), f"{checked_in} is stale: regenerate it with `make compile`"
    loaded = components.load_component_from_file(str(checked_in))
    assert loaded.name == name.replace("_", "-")
    assert set(loaded.component_spec.inputs) == set(_documents(checked_in)[0]["root"]["inputDefinitions"]["parameters"])


def test_multitask_search_unrolls_its_rounds(tmp_path):
    from kfp import compiler

    from pipelines.multitask_search.pipeline import build_pipeline

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline(rounds=2, children_per_round=3), str(path))
    tasks = _documents(path)[0]["root"]["dag"]["tasks"]
    names = sorted(t["taskInfo"]["name"] for t in tasks.values())
    assert [n for n in names if not n.startswith("for-loop")] == [
        "continue-search", "init-search", "register-champion", "report", "round-0-aggregate", "round-0-controller",
        "round-1-aggregate", "round-1-controller"]
    assert len([n for n in names if n.startswith("for-loop")]) == 2
    # Round 1 asks only after round 0 is aggregated: it takes round 0's next_round output.
    r1 = next(t for t in tasks.values() if t["taskInfo"]["name"] == "round-1-controller")
    source = r1["inputs"]["parameters"]["round_index"]["taskOutputParameter"]
    assert tasks[source["producerTask"]]["taskInfo"]["name"] == "round-0-aggregate"
    # The window ends after its last round: the next window submitted (while the budget lasts),
    # finish (register_champion), then the report.
    by_name = {t["taskInfo"]["name"]: t for t in tasks.values()}
    assert [tasks[d]["taskInfo"]["name"] for d in by_name["continue-search"]["dependentTasks"]] == ["round-1-aggregate"]
    assert by_name["continue-search"]["inputs"]["parameters"]["run_id"] == {
        "runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}
    assert [tasks[d]["taskInfo"]["name"] for d in by_name["register-champion"]["dependentTasks"]] == ["continue-search"]
    assert [tasks[d]["taskInfo"]["name"] for d in by_name["report"]["dependentTasks"]] == ["register-champion"]


@pytest.mark.parametrize("name", PIPELINES)
def test_every_pack_asks_for_a_gpu_node_in_the_cuda_image_and_retries(name):
    from components.image import RUNTIME_IMAGE, TRAINER_GPU_IMAGE

    spec, platform = _documents(COMPILED / f"{name}.yaml")
    executors = spec["deploymentSpec"]["executors"]
    children = [n for n in executors if "train-pack" in n]
    rounds = importlib.import_module(f"pipelines.{name}.pipeline").DEFAULT_ROUNDS
    assert len(children) == rounds
    # The CUDA image exactly where a GPU is requested, the CPU image everywhere else.
    gpu = {n for n, e in executors.items() if "accelerator" in e["container"].get("resources", {})}
    assert gpu == set(children)
    assert {n for n, e in executors.items() if e["container"]["image"] == TRAINER_GPU_IMAGE} == gpu
    assert {e["container"]["image"] for n, e in executors.items() if n not in gpu} == {RUNTIME_IMAGE}
    assert "taml-trainer-gpu" in TRAINER_GPU_IMAGE
    for executor in children:
        resources = executors[executor]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "1"
        assert resources["resourceCpuLimit"] == "4" and resources["resourceMemoryLimit"] == "16G"
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][executor]
        assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert k8s["podMetadata"]["labels"] == {"kueue.x-k8s.io/queue-name": "taml-gpu",
                                                "kueue.x-k8s.io/priority-class": "taml-gpu-training"}
    tasks = _tasks(spec)
    child_tasks = [t for n, t in tasks.items() if n.endswith("-pack")]
    assert len(child_tasks) == rounds
    assert all(t["retryPolicy"]["maxRetryCount"] == 2 and t["retryPolicy"]["backoffDuration"] == "30s"
               for t in child_tasks)


@pytest.mark.parametrize("name", PIPELINES)
def test_state_steps_are_never_cached_and_retried_once_children_are_cached(name):
    spec = _documents(COMPILED / f"{name}.yaml")[0]
    tasks = _tasks(spec)
    for task_name, task in tasks.items():
        if "dag" in spec["components"][task["componentRef"]["name"]]:  # a ParallelFor or nested rounds
            assert not task.get("cachingOptions", {}).get("enableCache", False), task_name
            continue
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        if task_name.endswith("-pack"):
            assert cached, task_name  # a pack's inputs fix its results: a cache hit is safe
        else:
            assert not cached, f"{task_name} reads or writes search state and must not be cached"
            assert task["retryPolicy"]["maxRetryCount"] == 1, task_name
    assert "report" in tasks  # every pipeline ends with the HTML report


@pytest.mark.parametrize("name", PIPELINES)
def test_every_step_gets_endpoints_and_keys_from_the_cluster_and_runs_as_the_image_user(name):
    spec, platform = _documents(COMPILED / f"{name}.yaml")
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(spec["deploymentSpec"]["executors"])  # every step, children included
    for executor, config in executors.items():
        [cm] = config["configMapAsEnv"]
        assert cm["configMapName"] == "taml-endpoints" and cm["optional"] is False
        assert {e["envVar"] for e in cm["keyToEnv"]} >= {"MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL"}
        [secret] = config["secretAsEnv"]
        assert secret["secretName"] == "taml-s3-credentials" and secret["optional"] is True, executor  # IRSA: none
        assert config["securityContext"] == {"runAsUser": "10001", "runAsGroup": "10001", "runAsNonRoot": True}
    root_inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert not [p for p in root_inputs if re.search("key|secret|password|token|endpoint", p, re.I)]


def test_pipeline_shapes():
    def display(spec: dict, keys: list[str]) -> list[str]:  # task keys -> display names
        names = {k: t["taskInfo"]["name"] for k, t in spec["root"]["dag"]["tasks"].items()}
        return sorted(names[k] for k in keys)

    spec = _documents(COMPILED / "transfer_search.yaml")[0]
    transfer = _tasks(spec)
    sources = transfer["transfer-init"]["inputs"]["parameters"]["sources"]["taskOutputParameter"]
    assert display(spec, [sources["producerTask"]]) == ["task-distance"]
    assert display(spec, transfer["round-0-controller"]["dependentTasks"]) == ["transfer-init"]
    for step in ("task-distance", "transfer-init"):  # both take the one settings mapping
        assert transfer[step]["inputs"]["parameters"]["settings"] == {"componentInputParameter": "settings"}
    # Every search ends with Study.finish (register_champion), then the report.
    for name in ("multitask_search", "transfer_search"):
        spec = _documents(COMPILED / f"{name}.yaml")[0]
        tasks = _tasks(spec)
        last = f"round-{importlib.import_module(f'pipelines.{name}.pipeline').DEFAULT_ROUNDS - 1}-aggregate"
        if name == "multitask_search":  # a window: the continuation first
            assert display(spec, tasks["continue-search"]["dependentTasks"]) == [last], name
            last = "continue-search"
        assert display(spec, tasks["register-champion"]["dependentTasks"]) == [last], name
        assert display(spec, tasks["report"]["dependentTasks"]) == ["register-champion"], name
    spec = _documents(COMPILED / "scheduled_retraining.yaml")[0]
    retraining = _tasks(spec)
    assert display(spec, retraining["register-champion"]["dependentTasks"]) == ["resume-search", "rounds"]
    assert display(spec, retraining["report"]["dependentTasks"]) == ["register-champion", "resume-search"]
    # The rounds are a nested pipeline fed by resume_search: search_dir enters the ParallelFor as an
    # input of the rounds' DAG, never as a task output (kfp.local would swap it for the loop item).
    rounds = retraining["rounds"]["inputs"]["parameters"]
    assert {k: v["taskOutputParameter"]["outputParameterKey"] for k, v in rounds.items()} == {
        "search_dir": "search_dir", "start_round": "round_index"}
    assert display(spec, [rounds["search_dir"]["taskOutputParameter"]["producerTask"]]) == ["resume-search"]
    assert retraining["round-0-controller"]["inputs"]["parameters"]["search_dir"] == {
        "componentInputParameter": "search_dir"}
    assert {"round-0-controller", "round-1-aggregate"} <= set(retraining)


def test_parallelism_is_the_gpus_one_pack_each(tmp_path):
    from kfp import compiler

    from pipelines.multitask_search.pipeline import build_pipeline

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline(rounds=1, children_per_round=8, parallelism=3), str(path))
    tasks = _documents(path)[0]["root"]["dag"]["tasks"]
    loops = [t for t in tasks.values() if "parameterIterator" in t]
    assert [t["iteratorPolicy"]["parallelismLimit"] for t in loops] == [3]
    [ask] = [t for t in tasks.values() if t["taskInfo"]["name"] == "round-0-controller"]
    assert ask["inputs"]["parameters"]["packs"] == {"runtimeValue": {"constant": 3}}  # 3 packs of 3, 3, 2
    path = tmp_path / "cpu.yaml"
    compiler.Compiler().compile(build_pipeline(rounds=1, children_per_round=2, gpu=False), str(path))
    executors = _documents(path)[0]["deploymentSpec"]["executors"]
    assert all("accelerator" not in e["container"].get("resources", {}) for e in executors.values())
    assert {e["container"]["image"].split("/")[-1].split(":")[0] for e in executors.values()} == {"taml-runtime"}
    with pytest.raises(ValueError, match="parallelism"):
        build_pipeline(rounds=1, children_per_round=2, parallelism=0)


# The header comment kfp writes for a dict default, e.g. "#    settings: dict [Default: {...}]".
_DICT_DEFAULT = re.compile(r"^(#\s+\w+: dict \[Default: )(\{.*\})\]$")


def _lines(path: Path) -> list[str]:
    """The YAML's lines without the kfp version; a dict default in the header comment with its keys
    sorted: kfp prints it in protobuf Struct order, which changes with the process's hash seed
    (the YAML body, compared as documents above, has it sorted)."""
    out = []
    for line in path.read_text().splitlines():
        if "sdkVersion" in line:
            continue
        match = _DICT_DEFAULT.match(line)
        if match:
            line = f"{match.group(1)}{sorted(ast.literal_eval(match.group(2)).items())}]"
        out.append(line)
    return out


def test_taml_pipeline_compile_writes_the_checked_in_yaml(tmp_path, monkeypatch, capsys):
    from transfer_automl.cli import main

    monkeypatch.chdir(REPO)
    assert main(["pipeline", "compile", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in PIPELINES:
        assert f"{name}.yaml" in out
        assert _lines(tmp_path / f"{name}.yaml") == _lines(COMPILED / f"{name}.yaml"), name


# What a pipeline takes; every setting of the search comes in the one `settings` mapping
# (SearchSettings' fields), checked by init_search, so none is typed by hand a second time.
REFIT = {"refit", "refit_k"}  # the register_champion step's parameters, refused in settings
INPUTS = {
    "multitask_search": {"search_dir", "settings", "max_trials"} | REFIT,
    "transfer_search": {"search_dir", "target_tasks", "source_search", "distance", "select", "repeats",
                        "probe_trials", "mode", "top_k", "settings"} | REFIT,
    "scheduled_retraining": {"search_root", "tasks"} | REFIT,  # tasks: which stored search to continue
}
_SHAPED = {"out", "batch_size", "trials", "progress", "pack"} | REFIT  # set by the pipeline, refused in settings


@pytest.mark.parametrize("name", PIPELINES)
def test_settings_come_in_one_mapping_of_search_settings(name):
    from transfer_automl.study import SearchSettings

    fields = set(SearchSettings.__dataclass_fields__)
    inputs = _documents(COMPILED / f"{name}.yaml")[0]["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == INPUTS[name]
    assert set(inputs) & fields <= ({"tasks"} if name == "scheduled_retraining" else set()) | REFIT
    assert (inputs["refit"]["defaultValue"], inputs["refit_k"]["defaultValue"]) == (
        SearchSettings.__dataclass_fields__["refit"].default, SearchSettings.__dataclass_fields__["refit_k"].default)
    if "settings" in inputs:
        assert inputs["settings"]["parameterType"] == "STRUCT"
        default = inputs["settings"].get("defaultValue", {})
        assert set(default) <= fields - _SHAPED, sorted(set(default) - (fields - _SHAPED))


def test_the_yaml_does_not_grow_with_the_trial_budget(tmp_path):
    """A run is a window of rounds; the budget is the run-time max_trials: 100 and 5,000 trials of
    16 children compile to the same pipeline but for that default, under 1 MiB, and a window
    longer than 10 rounds is refused (a budget is not expressed by unrolling)."""
    from kfp import compiler

    from pipelines.multitask_search.pipeline import MAX_WINDOW, build_pipeline

    specs, sizes = {}, {}
    for trials in (100, 5000):
        path = tmp_path / f"{trials}.yaml"
        compiler.Compiler().compile(build_pipeline(rounds=MAX_WINDOW, children_per_round=16, max_trials=trials),
                                    str(path))
        sizes[trials] = path.stat().st_size
        spec = _documents(path)[0]
        assert spec["root"]["inputDefinitions"]["parameters"]["max_trials"].pop("defaultValue") == trials
        specs[trials] = spec
    assert specs[100] == specs[5000]
    assert abs(sizes[100] - sizes[5000]) <= 4 and max(sizes.values()) < 1024 * 1024, sizes
    with pytest.raises(ValueError, match="at most 10 rounds"):
        build_pipeline(rounds=MAX_WINDOW + 1)

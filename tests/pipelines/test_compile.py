"""Every pipeline compiles, and the YAML checked in beside it is what it compiles to."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PIPELINES = ["multitask_search"]
_VOLATILE = ("sdkVersion",)  # differs between kfp patch releases, not between pipelines


def _documents(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for doc in docs:
        for key in _VOLATILE:
            doc.pop(key, None)
    return docs


@pytest.mark.parametrize("name", PIPELINES)
def test_compiled_pipeline_matches_the_checked_in_yaml(tmp_path, name):
    module = importlib.import_module(f"pipelines.{name}.pipeline")
    written = module.compile_all(tmp_path)
    assert [p.name for p in written] == [f"{name}.yaml"]
    checked_in = REPO / "pipelines" / name / f"{name}.yaml"
    assert _documents(written[0]) == _documents(checked_in), (
        f"{checked_in} is stale: regenerate it with `python pipelines/{name}/pipeline.py`")


def test_multitask_search_unrolls_its_rounds(tmp_path):
    from kfp import compiler

    from pipelines.multitask_search.pipeline import build_pipeline

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline(rounds=2, children_per_round=3), str(path))
    tasks = _documents(path)[0]["root"]["dag"]["tasks"]
    names = sorted(t["taskInfo"]["name"] for t in tasks.values())
    assert [n for n in names if not n.startswith("for-loop")] == [
        "init-search", "round-0-aggregate", "round-0-controller", "round-1-aggregate", "round-1-controller"]
    assert len([n for n in names if n.startswith("for-loop")]) == 2
    # Round 1 asks only after round 0 is aggregated: it takes round 0's next_round output.
    r1 = next(t for t in tasks.values() if t["taskInfo"]["name"] == "round-1-controller")
    source = r1["inputs"]["parameters"]["round_index"]["taskOutputParameter"]
    assert tasks[source["producerTask"]]["taskInfo"]["name"] == "round-0-aggregate"


def test_every_child_asks_for_a_gpu_node_and_retries():
    path = REPO / "pipelines" / "multitask_search" / "multitask_search.yaml"
    spec, platform = _documents(path)
    children = [name for name in spec["deploymentSpec"]["executors"] if "train-child" in name]
    assert len(children) == 3
    for name in children:
        resources = spec["deploymentSpec"]["executors"][name]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "1"
        assert resources["resourceCpuLimit"] == "4" and resources["resourceMemoryLimit"] == "16G"
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][name]
        assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu"
    retried = [t for c in spec["components"].values() for t in c.get("dag", {}).get("tasks", {}).values()
               if "retryPolicy" in t]
    assert len(retried) == 3 and all(t["retryPolicy"]["maxRetryCount"] == 2 for t in retried)


def test_taml_pipeline_compile_writes_the_checked_in_yaml(tmp_path, monkeypatch, capsys):
    from transfer_automl.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(["pipeline", "compile", "--out", str(tmp_path)]) == 0
    assert "multitask_search.yaml" in capsys.readouterr().out
    fresh = [line for line in (tmp_path / "multitask_search.yaml").read_text().splitlines() if "sdkVersion" not in line]
    checked_in = [line for line in (Path("pipelines/multitask_search/multitask_search.yaml")).read_text().splitlines()
                  if "sdkVersion" not in line]
    assert fresh == checked_in

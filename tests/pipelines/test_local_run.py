"""The multitask_search pipeline run whole by kfp.local (lightweight components in subprocesses)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import pytest

from transfer_automl.search import Ledger, load_checkpoint

pytestmark = [
    pytest.mark.e2e,
    # The local runner runs the project image's code in this venv and ignores display names and
    # resource limits; it says so once per task.
    pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Task .* have no effect in the current local runner:UserWarning"),
]

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture()
def local_kfp(tmp_path, monkeypatch):
    from kfp import local
    from kfp.local import config, logging_utils

    # kfp.local swaps builtins.print for an indenting one around each task and, with tasks in
    # parallel (ParallelFor), restores the wrong one: logs double after every round. Keep print.
    monkeypatch.setattr(logging_utils, "indented_print", lambda num_spaces=4: contextlib.nullcontext())
    monkeypatch.setattr(config.LocalExecutionConfig, "instance", None)  # restored after the test
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "pipeline_root"))
    return local


def test_two_rounds_of_two_children_run_locally(tmp_path, local_kfp, toy_table):
    from pipelines.multitask_search.pipeline import build_pipeline

    search_dir = tmp_path / "search"
    pipeline = build_pipeline(rounds=2, children_per_round=2)  # GPU settings: ignored locally
    pipeline(search_dir=str(search_dir), table=str(toy_table), metric_columns=["t1", "t2"], search_id="local")
    rows = Ledger(search_dir / "ledger").read().to_pylist()
    assert len(rows) == 4
    assert len({r["trial_id"] for r in rows}) == 4
    assert sorted(r["controller_step"] for r in rows) == [0, 0, 1, 1]
    checkpoint = load_checkpoint(search_dir / "checkpoint.pt")
    assert checkpoint["step"] == 2 and checkpoint["search_id"] == "local"
    summaries = list((tmp_path / "pipeline_root").rglob("summary"))
    assert len(summaries) == 2 and "accuracy-top10" in summaries[0].read_text()
    outputs = [json.loads(p.read_text()) for p in (tmp_path / "pipeline_root").rglob("executor_output.json")
               if p.parent.name.startswith("aggregate-rewards")]
    assert sorted(o["parameterValues"]["Output"] for o in outputs) == [1, 2]  # the next round's index
    logged = outputs[0]["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    tasks = {r["task"] for r in rows if r["controller_step"] == 0}
    assert all(f"reward/{task}/accuracy_top10" in logged for task in tasks), sorted(logged)

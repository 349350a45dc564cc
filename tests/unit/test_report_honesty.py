"""Figures that say what they show: each task embedding's distance from its initialization ("not
yet learned" within the initialization scale), the policy's entropy relative to uniform, and the
trials and controller steps behind every caption."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from transfer_automl.report import build_report
from transfer_automl.report.data import embedding_movement, relative_entropy
from transfer_automl.search import load_checkpoint, make_search, save_checkpoint
from transfer_automl.search.multitask import ControllerSearch, task_embedding_table
from transfer_automl.space import SearchSpace
from transfer_automl.space.decisions import Decision
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchSettings
from transfer_automl.tracking import MemoryTracker

BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"
SPACE = SearchSpace("toy", (Decision("a", (0, 1, 2)), Decision("b", ("x", "y"))))


def test_relative_entropy_is_one_for_uniform_and_zero_for_one_choice():
    p = np.array([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [np.nan, np.nan, np.nan]])
    e = relative_entropy(p)
    assert e[0] == pytest.approx(1.0) and e[1] == pytest.approx(0.0)
    assert e[2] == pytest.approx(math.log(2) / math.log(3)) and math.isnan(e[3])
    assert math.isnan(relative_entropy(np.array([[1.0]]))[0])  # one choice: no entropy to speak of


def _told(search, rounds: int, reward=lambda trial: float(trial.actions[0])):
    for _ in range(rounds):
        trials = search.ask(4)
        search.tell(trials, [reward(t) for t in trials])


def test_a_controller_search_keeps_its_initial_task_embeddings_through_checkpoints(tmp_path):
    search = make_search("reinforce", SPACE, ["t1", "t2"], "s", seed=3, update_config={"learning_rate": 0.05})
    start = task_embedding_table(search.controller.state_dict()).clone()
    _told(search, 5)
    now = task_embedding_table(search.controller.state_dict())
    assert not torch.equal(now, start)  # learning moved them
    body = search.state_dict()
    assert torch.equal(body["initial_task_embeddings"], start)
    save_checkpoint(tmp_path / "c.pt", body)
    restored = ControllerSearch.from_checkpoint(load_checkpoint(tmp_path / "c.pt"))
    assert torch.equal(restored.state_dict()["initial_task_embeddings"], start)
    # A checkpoint without it (written before it was kept) still loads, and a scratch search's start
    # is re-derived from its seed exactly.
    old = {k: v for k, v in body.items() if k != "initial_task_embeddings"}
    assert "initial_task_embeddings" not in ControllerSearch.from_checkpoint(old).state_dict()
    assert torch.equal(ControllerSearch.initial_embeddings_from_seed(old, 3), start)
    movement = embedding_movement({**old, "search_settings": {"seed": 3, "init_from": "scratch"}})
    assert "seed 3" in movement.initial_from
    expected = (now - start).double().norm(dim=1).numpy()
    assert movement.moved == pytest.approx(expected)
    assert movement.scale == pytest.approx(float(start.double().norm(dim=1).mean()))
    # an older transferred search: its start is unknowable, and nothing is made up
    assert embedding_movement({**old, "search_settings": {"seed": 3, "init_from": "transfer"}}) is None


def test_movement_within_the_initialization_scale_is_not_yet_learned():
    search = make_search("reinforce", SPACE, ["t1", "t2"], "s", seed=0, update_config={"learning_rate": 1e-4})
    _told(search, 3)
    movement = embedding_movement(search.state_dict())
    assert movement.initial_from == "recorded in the checkpoint"
    assert 0 < movement.moved.max() < movement.scale and not movement.learned.any()
    body = search.state_dict()
    key = next(k for k in body["controller_state"] if k.endswith("task_embeddings.weight"))
    body["controller_state"][key][1] += 1.0  # t2's embedding moved far past its start's own size
    moved = embedding_movement(body)
    assert list(moved.learned) == [False, True]


@pytest.fixture(scope="module")
def nb201_search(tmp_path_factory):
    if not (BENCHMARKS / "nasbench201").is_dir():
        pytest.skip("NAS-Bench-201 table not found")
    out = tmp_path_factory.mktemp("honest") / "s"
    run_search(SearchSettings(tasks=(), trials=12, batch_size=4, out=str(out), method="reinforce",
                              benchmark="nasbench201", data_dir=str(BENCHMARKS), controller_lr=1e-4, progress=False,
                              search_id="honest"), tracker=MemoryTracker())
    return out


def test_report_captions_say_trials_steps_entropy_and_not_yet_learned(nb201_search):
    html = build_report(str(nb201_search), data_dir=str(BENCHMARKS)).html
    assert html.count("Drawn from 12 trials, 3 controller steps") >= 3  # curves, sampled choices, evolution, policy
    assert "drawn from 12 trials, 3 controller steps" in html  # the similarity caption
    assert "entropy relative to uniform (H / log of the number of choices)" in html
    assert "the controller has barely learned yet" in html  # 3 steps at 1e-4: near uniform
    assert "Not yet learned: every embedding moved less from its initialization" in html
    assert "Initial embeddings recorded in the checkpoint" in html


def test_an_older_checkpoint_without_initial_embeddings_still_renders(nb201_search, tmp_path):
    body = load_checkpoint(nb201_search / "checkpoint.pt")
    del body["initial_task_embeddings"]
    save_checkpoint(nb201_search / "checkpoint.pt", body)
    html = build_report(str(nb201_search), data_dir=str(BENCHMARKS)).html
    assert "Not yet learned" in html and "re-derived from the search&#x27;s seed 0 (an older checkpoint)" in html

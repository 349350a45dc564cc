"""One interface suite for every registered search method (Optuna's `BasicSamplerTestCase`).

Parametrized over `SEARCHES`, so a newly registered method is tested here without a line of its
own: ask proposes valid trials with deterministic ids, the seed decides the trials, tell learns
from finite rewards and refuses bad ones without any state change, and the state survives
`torch.save` / `torch.load(weights_only=True)` so that a restored search asks what the original
would have. Method-specific behaviour lives in the methods' own test files.
"""

from __future__ import annotations

import copy
import io
import math
from typing import Any

import numpy as np
import pytest
import torch

from transfer_automl.errors import ConfigError, SearchSpaceError
from transfer_automl.search import SEARCHES, ControllerSearch, Search, Trial, make_search
from transfer_automl.space import Decision, SearchSpace

SPACE = SearchSpace("interface", (
    Decision("width", (16, 32, 64)),
    Decision("act", ("relu", "tanh")),
    Decision("dropout", (0.0, 0.1, 0.2, 0.5)),
))
TASKS = ["a", "b"]
SMALL_LSTM = {"hidden_size": 8, "num_layers": 1, "action_embedding_size": 4, "task_embedding_size": 4}
# Small settings so that each method leaves its random start within a few rounds and runs fast;
# a method not listed here runs with its defaults.
SETTINGS: dict[str, dict[str, Any]] = {
    "re": {"population_size": 3, "sample_size": 2},
    "tpe": {"n_startup_trials": 2},
    "reinforce": {"controller_config": SMALL_LSTM, "update_config": {"learning_rate": 0.05}},
    "ppo": {"controller_config": SMALL_LSTM, "update_config": {"update_every": 4, "gradient_steps": 2, "batch_size": 4}},
    "pqt": {"controller_config": SMALL_LSTM, "update_config": {"learning_rate": 0.05, "top_k": 3}},
    "transformer": {"controller_config": {"embedding_size": 4, "num_layers": 1, "feedforward_size": 8}},
}
METHODS = sorted(SEARCHES)
BATCH = 4


def make(name: str, seed: int = 0) -> Search:
    return make_search(name, SPACE, TASKS, "s", seed=seed, **SETTINGS.get(name, {}))


def reward(trial: Trial) -> float:
    """In [0, 1]: the share of decisions at their first choice (task "a") or at their last (task "b")."""
    cards = SPACE.cardinalities
    target = [0] * len(cards) if trial.task == "a" else [c - 1 for c in cards]
    return sum(a == t for a, t in zip(trial.actions, target, strict=True)) / len(cards)


def rounds(search: Search, n: int) -> list[list[tuple[str, str, list[int]]]]:
    """n rounds of ask(BATCH) / tell(reward); each round's (trial id, task, actions)."""
    seen = []
    for _ in range(n):
        trials = search.ask(BATCH)
        seen.append([(t.trial_id, t.task, t.actions) for t in trials])
        search.tell(trials, [reward(t) for t in trials])
    return seen


def restore(name: str, body: dict[str, Any]) -> Search:
    """A search rebuilt from a state dict alone, the way a resumed search step rebuilds it."""
    if issubclass(SEARCHES[name], ControllerSearch):
        return ControllerSearch.from_checkpoint(body)
    search = make_search(name, SPACE, list(body["tasks"]), str(body["search_id"]), seed=12345,
                         **body.get("settings", {}))  # the state, not the seed, decides what comes next
    search.load_state_dict(body)
    return search


def through_torch_save(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    """Equal nested dicts/lists/tuples of plain values and tensors (tensors: equal dtype and values)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"  # a != a: NaN equals NaN here


def test_the_suite_covers_every_method():
    assert {"rs", "re", "tpe", "reinforce", "ppo", "pqt", "transformer"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_ask_proposes_valid_trials_with_deterministic_ids(name):
    search = make(name)
    assert search.name == name and search.step == 0
    rounds(search, 3)  # past the random start of "re" and "tpe"
    ids = set()
    for step in range(3, 5):
        trials = search.ask(6)
        assert len(trials) == 6
        for k, t in enumerate(trials):
            assert t.trial_id == f"s/{step:06d}/{k:03d}" and t.index == k and t.controller_step == step
            assert t.task in TASKS and t.task == TASKS[t.task_index]
            assert len(t.actions) == len(SPACE.cardinalities)
            assert all(isinstance(a, int) and 0 <= a < c for a, c in zip(t.actions, SPACE.cardinalities, strict=True))
            assert t.config == SPACE.decode(t.actions)
            assert SPACE.encode(t.config) == t.actions
        ids |= {t.trial_id for t in trials}
        search.tell(trials, [reward(t) for t in trials])
    assert len(ids) == 12  # distinct within and across rounds


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_trials_other_seed_other_trials(name):
    first, second, other = rounds(make(name, seed=0), 5), rounds(make(name, seed=0), 5), rounds(make(name, seed=1), 5)
    assert first == second
    assert [[(task, actions) for _, task, actions in r] for r in first] != \
        [[(task, actions) for _, task, actions in r] for r in other]


@pytest.mark.parametrize("name", METHODS)
def test_tell_returns_finite_metrics_and_advances_the_step(name):
    search = make(name)
    for step in range(3):
        trials = search.ask(3)
        # Any real number is a reward: floats, ints and numpy scalars.
        metrics = search.tell(trials, [reward(trials[0]), int(reward(trials[1]) > 0.5), np.float32(reward(trials[2]))])
        assert search.step == step + 1
        assert isinstance(metrics, dict)
        for key, value in metrics.items():
            assert isinstance(key, str) and isinstance(value, float) and math.isfinite(value), (key, value)


BAD_REWARDS = [float("nan"), float("inf"), -float("inf"), True, "0.5", None]


@pytest.mark.parametrize("name", METHODS)
def test_a_refused_tell_changes_nothing(name):
    search, twin = make(name), make(name)
    rounds(search, 2)
    rounds(twin, 2)
    trials = search.ask(3)
    twin_trials = twin.ask(3)
    before = copy.deepcopy(search.state_dict())

    for bad in BAD_REWARDS:
        with pytest.raises(ConfigError) as refused:
            search.tell(trials, [0.5, bad, 0.5])
        assert isinstance(refused.value, ValueError)
        assert trials[1].trial_id in str(refused.value) and repr(bad) in str(refused.value)
    with pytest.raises(ConfigError, match="3 trials but 2 rewards"):
        search.tell(trials, [0.5, 0.5])
    with pytest.raises(ConfigError, match="3 trials but 4 rewards"):
        search.tell(trials, [0.5] * 4)
    outside = copy.copy(trials[0])
    outside.actions = [0, 0, 9]
    with pytest.raises(SearchSpaceError, match="dropout"):
        search.tell([trials[1], outside], [0.5, 0.5])
    foreign = copy.copy(trials[0])
    foreign.task = "c"
    with pytest.raises(ConfigError, match="'c'"):
        search.tell([trials[1], foreign], [0.5, 0.5])

    assert search.step == 2
    assert_same_state(before, search.state_dict())
    # And it goes on exactly as a search that never saw the refused rounds.
    search.tell(trials, [reward(t) for t in trials])
    twin.tell(twin_trials, [reward(t) for t in twin_trials])
    assert rounds(search, 2) == rounds(twin, 2)


@pytest.mark.parametrize("name", METHODS)
def test_state_survives_torch_save_and_a_restored_search_asks_the_same(name):
    original = make(name)
    rounds(original, 3)
    body = through_torch_save(original.state_dict())
    assert body["name"] == name and body["step"] == 3
    restored = restore(name, body)
    assert type(restored) is type(original) and restored.step == original.step
    assert_same_state(through_torch_save(restored.state_dict()), body)
    assert rounds(restored, 3) == rounds(original, 3)

"""Unit tests for the per-task EMA baselines (algorithms/baselines.py), against hand arithmetic."""

from __future__ import annotations

import math

import pytest

from transfer_automl.algorithms.baselines import TaskBaselines

A = 0.9  # decay alpha
FLOOR = 0.02  # min_std


def _baselines(num_tasks: int = 1, normalization: str = "std") -> TaskBaselines:
    return TaskBaselines(num_tasks, decay=A, min_std=FLOOR, normalization=normalization)


def test_fresh_statistics():
    b = _baselines(3)
    assert b.mean == [0.0, 0.0, 0.0]
    assert b.var == [0.0, 0.0, 0.0]
    assert b.count == [0, 0, 0]
    assert b.std(1) == FLOOR  # sqrt(0) floored


def test_std_normalization_sequence_by_hand():
    b = _baselines()

    # R1 = 0.5: no baseline yet -> advantage 0; it only initializes mean = R1, var = 0
    assert b.advantage(0, 0.5) == 0.0
    b.observe(0, 0.5)
    assert b.mean[0] == 0.5 and b.var[0] == 0.0 and b.count[0] == 1

    # R2 = 0.6: sigma = max(sqrt(0), 0.02) = 0.02 -> advantage (0.6 - 0.5) / 0.02 = 5.0
    assert b.advantage(0, 0.6) == pytest.approx(5.0)
    b.observe(0, 0.6)
    # delta = 0.1; mean = 0.5 + 0.1 * 0.1 = 0.51; var = 0.9 * (0 + 0.1 * 0.01) = 0.0009
    assert b.mean[0] == pytest.approx(0.51)
    assert b.var[0] == pytest.approx(0.0009)
    assert b.std(0) == pytest.approx(0.03)  # sqrt(0.0009) = 0.03 > floor

    # R3 = 0.4: advantage (0.4 - 0.51) / 0.03 = -0.11 / 0.03
    assert b.advantage(0, 0.4) == pytest.approx(-0.11 / 0.03)
    b.observe(0, 0.4)
    # delta = -0.11; mean = 0.51 + 0.1 * -0.11 = 0.499
    # var = 0.9 * (0.0009 + 0.1 * 0.0121) = 0.9 * 0.00211 = 0.001899
    assert b.mean[0] == pytest.approx(0.499)
    assert b.var[0] == pytest.approx(0.001899)

    # R4 = 0.7: advantage (0.7 - 0.499) / sqrt(0.001899) = 0.201 / 0.0435775...
    assert b.advantage(0, 0.7) == pytest.approx(0.201 / math.sqrt(0.001899))
    b.observe(0, 0.7)
    # delta = 0.201; mean = 0.499 + 0.1 * 0.201 = 0.5191
    # var = 0.9 * (0.001899 + 0.1 * 0.040401) = 0.9 * 0.0059391 = 0.00534519
    assert b.mean[0] == pytest.approx(0.5191)
    assert b.var[0] == pytest.approx(0.00534519)
    assert b.count[0] == 4


def test_std_floor_applies_when_variance_is_small():
    b = _baselines()
    b.observe(0, 0.5)
    b.observe(0, 0.51)
    # delta = 0.01; mean = 0.5 + 0.1 * 0.01 = 0.501; var = 0.9 * 0.1 * 0.0001 = 0.000009
    assert b.mean[0] == pytest.approx(0.501)
    assert b.var[0] == pytest.approx(0.000009)
    # sqrt(0.000009) = 0.003 < 0.02 -> sigma = 0.02; advantage (0.52 - 0.501) / 0.02 = 0.95
    assert b.std(0) == FLOOR
    assert b.advantage(0, 0.52) == pytest.approx(0.95)


def test_advantage_does_not_change_statistics():
    b = _baselines()
    b.observe(0, 0.5)
    b.observe(0, 0.6)
    before = (list(b.mean), list(b.var), list(b.count))
    first = b.advantage(0, 0.9)
    assert b.advantage(0, 0.9) == first
    assert (b.mean, b.var, b.count) == before


@pytest.mark.parametrize(
    "r1, r2, expected",
    [
        (0.5, 0.6, (0.6 - 0.5) / 0.5),  # (R - b) / |b| = 0.2
        (0.8, 0.4, (0.4 - 0.8) / 0.8),  # = -0.5
        (-0.4, -0.2, (-0.2 - -0.4) / 0.4),  # |b| for a negative baseline: 0.5
        (0.01, 0.03, (0.03 - 0.01) / 0.02),  # |b| = 0.01 floored at min_std -> 1.0
    ],
)
def test_baseline_normalization(r1, r2, expected):
    b = _baselines(normalization="baseline")
    assert b.advantage(0, r1) == 0.0
    b.observe(0, r1)
    assert b.advantage(0, r2) == pytest.approx(expected)


def test_baseline_normalization_after_ema_update():
    b = _baselines(normalization="baseline")
    b.observe(0, 0.5)
    b.observe(0, 0.7)  # mean = 0.5 + 0.1 * 0.2 = 0.52
    assert b.mean[0] == pytest.approx(0.52)
    # (0.6 - 0.52) / 0.52, not divided by sigma (which would be sqrt(0.9 * 0.1 * 0.04) = 0.06)
    assert b.advantage(0, 0.6) == pytest.approx(0.08 / 0.52)


def test_tasks_are_independent():
    b = _baselines(2)
    for r in (0.5, 0.9, 0.1, 0.7):
        b.observe(0, r)
    assert b.mean[1] == 0.0 and b.var[1] == 0.0 and b.count[1] == 0
    assert b.advantage(1, 0.3) == 0.0  # task 1 still has no baseline
    b.observe(1, 0.3)
    b.observe(1, 0.4)
    # task 1 follows its own arithmetic: mean = 0.3 + 0.1 * 0.1 = 0.31, var = 0.9 * 0.1 * 0.01
    assert b.mean[1] == pytest.approx(0.31)
    assert b.var[1] == pytest.approx(0.0009)
    # task 0 unchanged by task 1's rewards: replay task 0 alone
    alone = _baselines(1)
    for r in (0.5, 0.9, 0.1, 0.7):
        alone.observe(0, r)
    assert b.mean[0] == alone.mean[0] and b.var[0] == alone.var[0] and b.count[0] == 4


def test_batch_advantages_use_pre_batch_statistics():
    b = _baselines(2)
    b.observe(0, 0.5)  # task 0: mean 0.5, var 0
    # batch: two rewards for task 0, two for the still-empty task 1
    out = b.advantages([0, 1, 0, 1], [0.6, 0.2, 0.7, 0.4])
    # task 0, both against mean 0.5 and sigma 0.02 (pre-batch): 0.1/0.02 and 0.2/0.02
    # task 1 had no baseline before the batch: both 0, even the second one
    assert out == pytest.approx([5.0, 0.0, 10.0, 0.0])
    # then the batch is observed in order:
    # task 0: 0.6 -> mean 0.51, var 0.0009; 0.7 -> delta 0.19, mean 0.51 + 0.019 = 0.529,
    #         var 0.9 * (0.0009 + 0.1 * 0.0361) = 0.9 * 0.00451 = 0.004059
    assert b.mean[0] == pytest.approx(0.529)
    assert b.var[0] == pytest.approx(0.004059)
    # task 1: 0.2 sets mean 0.2; 0.4 -> delta 0.2, mean 0.22, var 0.9 * 0.1 * 0.04 = 0.0036
    assert b.mean[1] == pytest.approx(0.22)
    assert b.var[1] == pytest.approx(0.0036)
    assert b.count == [3, 2]


def test_batch_advantages_length_mismatch():
    b = _baselines(1)
    with pytest.raises(ValueError):
        b.advantages([0, 0], [0.1])


def test_add_task():
    b = _baselines(1)
    b.observe(0, 0.5)
    assert b.add_task() == 1
    assert b.num_tasks == 2
    assert b.mean == [0.5, 0.0] and b.count == [1, 0]
    assert b.advantage(1, 0.9) == 0.0


def test_state_dict_round_trip():
    b = _baselines(3, normalization="baseline")
    for t, r in [(0, 0.5), (0, 0.6), (2, 0.3), (0, 0.4), (2, 0.35)]:
        b.observe(t, r)
    state = b.state_dict()
    assert state == {
        "decay": A, "min_std": FLOOR, "normalization": "baseline",
        "mean": b.mean, "var": b.var, "count": b.count,
    }
    restored = TaskBaselines.from_state_dict(state)
    assert restored.num_tasks == 3
    assert (restored.decay, restored.min_std, restored.normalization) == (A, FLOOR, "baseline")
    assert restored.mean == b.mean and restored.var == b.var and restored.count == b.count
    # the state is a copy: observing on the original leaves the saved state alone
    b.observe(1, 0.9)
    assert state["count"] == [3, 0, 2]
    assert restored.count == [3, 0, 2]
    # both continue identically
    fresh = TaskBaselines.from_state_dict(state)
    assert fresh.advantages([0, 2, 1], [0.7, 0.1, 0.2]) == restored.advantages([0, 2, 1], [0.7, 0.1, 0.2])
    assert fresh.state_dict() == restored.state_dict()


def test_from_state_dict_coerces_types():
    state = {"decay": "0.9", "min_std": 0.02, "normalization": "std", "mean": [1, 2], "var": [0, 1], "count": [1.0, 2.0]}
    b = TaskBaselines.from_state_dict(state)
    assert b.decay == 0.9
    assert b.mean == [1.0, 2.0] and all(type(x) is float for x in b.mean)
    assert b.count == [1, 2] and all(type(x) is int for x in b.count)


@pytest.mark.parametrize("normalization", ["none", "STD", "", "mean"])
def test_invalid_normalization(normalization):
    with pytest.raises(ValueError, match="normalization"):
        TaskBaselines(1, normalization=normalization)


@pytest.mark.parametrize("decay", [1.0, 1.5, -0.01])
def test_invalid_decay(decay):
    with pytest.raises(ValueError, match="decay"):
        TaskBaselines(1, decay=decay)


def test_decay_zero_is_allowed_and_tracks_last_reward():
    b = TaskBaselines(1, decay=0.0, min_std=FLOOR)
    b.observe(0, 0.5)
    b.observe(0, 0.8)
    # mean = 0.5 + 1.0 * 0.3 = 0.8; var = 0 * (...) = 0
    assert b.mean[0] == pytest.approx(0.8)
    assert b.var[0] == 0.0

"""The cost-aware reward (MnasNet's soft constraint, `--cost-target-s`, `--cost-weight`): formed in
one place (Study), so every method and ASHA's promotions see it; the ledger keeps the validation
accuracy as it was and records the reward used."""

from __future__ import annotations

import math

import pytest

from transfer_automl.errors import ConfigError
from transfer_automl.rewards import MIN_COST_S, cost_aware_reward
from transfer_automl.study import SearchSettings, Study
from transfer_automl.tracking.memory import MemoryTracker


def test_the_mnasnet_factor():
    assert cost_aware_reward(0.8, 10.0, 10.0) == 0.8  # at the target: unchanged
    assert cost_aware_reward(0.8, 20.0, 10.0) == pytest.approx(0.8 * 2 ** -0.07)  # twice the cost: ~5% less
    assert cost_aware_reward(0.8, 5.0, 10.0) == pytest.approx(0.8 * 0.5 ** -0.07)  # half: ~5% more
    assert cost_aware_reward(0.8, 20.0, 10.0, 0.0) == 0.8  # weight 0 ignores the cost
    assert cost_aware_reward(0.8, 0.0, 1.0) == pytest.approx(0.8 * MIN_COST_S ** -0.07)  # finite at zero cost
    with pytest.raises(ValueError, match="target"):
        cost_aware_reward(0.8, 1.0, 0.0)
    with pytest.raises(ValueError, match="weight"):
        cost_aware_reward(0.8, 1.0, 1.0, 0.5)


def test_cost_settings_are_checked_by_name():
    base = {"tasks": ["mpqa"], "out": "x", "trials": 1}
    with pytest.raises(ConfigError, match="settings.cost_target_s"):
        SearchSettings.from_mapping({**base, "cost_target_s": 0})
    with pytest.raises(ConfigError, match="settings.cost_weight"):
        SearchSettings.from_mapping({**base, "cost_weight": 0.07})
    assert SearchSettings.from_mapping({**base, "cost_target_s": "2.5"}).cost_target_s == 2.5


def _run(tmp_path, tiny_text_space, samples_dir, feature_cache_dir, method, told, **extra):
    study = Study.open({"tasks": ["mpqa", "sms_spam"], "out": str(tmp_path / f"{method}-{len(extra)}"),
                        "space": str(tiny_text_space), "data_dir": str(samples_dir),
                        "cache_dir": str(feature_cache_dir), "method": method, "trials": 8, "batch_size": 4,
                        "progress": False, "search_id": "cost", **extra}, tracker=MemoryTracker())
    tell = study.search.tell

    def spy(trials, rewards):  # what the search method itself is told
        told.extend(rewards)
        return tell(trials, rewards)

    study.search.tell = spy
    rows = []
    for step in study.pending_rounds():
        got = study.run_trials(study.ask_round(step))
        rows.extend(got)
        study.tell_round(step, got)
    study.release()
    return rows


@pytest.mark.parametrize("method", ["reinforce", "tpe"])
def test_the_cost_aware_reward_changes_the_reward_not_the_validation_accuracy(
        tmp_path, tiny_text_space, samples_dir, feature_cache_dir, method):
    plain_told, cost_told = [], []
    plain = _run(tmp_path, tiny_text_space, samples_dir, feature_cache_dir, method, plain_told)
    costly = _run(tmp_path, tiny_text_space, samples_dir, feature_cache_dir, method, cost_told,
                  cost_target_s=1e-4, cost_weight=-0.5)
    # One configuration, the same seeds: the same children, so the same accuracies.
    assert [r.val_accuracy for r in costly] == [r.val_accuracy for r in plain]
    assert [r.reward for r in plain] == [r.val_accuracy for r in plain]
    assert cost_told == [r.reward for r in costly] and plain_told == [r.reward for r in plain]
    for row in costly:
        cost = row.expected_cost_s if row.expected_cost_s is not None else row.duration_s
        assert row.reward == pytest.approx(cost_aware_reward(row.val_accuracy, cost, 1e-4, -0.5))
        assert row.reward < row.val_accuracy  # every child costs more than a tenth of a millisecond
    assert any(r.expected_cost_s is not None for r in costly)  # the second round used the estimate
    assert all(math.isfinite(r) for r in cost_told)


def test_asha_promotes_by_the_reward_the_search_sees():
    from dataclasses import dataclass

    from transfer_automl.search.fidelity import Rungs, asha_promotions

    @dataclass
    class Row:
        trial_id: str
        val_accuracy: float
        reward: float
        task: str = "a"
        rung: int = 0
        status: str = "ok"
        parent_trial_id: str | None = None

    # The most accurate child is the costliest: its cost-aware reward is the lowest.
    rows = [Row("s/000000/000", 0.9, 0.70), Row("s/000000/001", 0.8, 0.78), Row("s/000000/002", 0.7, 0.69)]
    (promoted,) = asha_promotions(rows, Rungs(1 / 3, 1.0, 3), 3)
    assert promoted.trial_id == "s/000000/001"

"""Unit tests for the off-policy PPO (algorithms/ppo.py) and PQT (algorithms/pqt.py) update rules,
against hand arithmetic, plus a learning test per rule on a toy two-task reward."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from transfer_automl.algorithms.baselines import TaskBaselines
from transfer_automl.algorithms.ppo import PPO, PPOConfig, clipped_surrogate_loss, polyak_update
from transfer_automl.algorithms.pqt import PQT, PQTConfig, PriorityQueue, sampled_decisions
from transfer_automl.controllers import LSTMController, Rollout
from transfer_automl.errors import ConfigError


def _controller(seed: int = 0, cardinalities: tuple[int, ...] = (4, 3, 2), num_tasks: int = 2) -> LSTMController:
    torch.manual_seed(seed)
    return LSTMController(list(cardinalities), num_tasks=num_tasks)


def _rollout(tasks: list[int], actions: list[list[int]]) -> Rollout:
    return Rollout(tasks=torch.tensor(tasks), actions=torch.tensor(actions),
                   log_probs=torch.empty(0), entropies=torch.empty(0))


def _round(controller: LSTMController, generator: torch.Generator, n: int) -> tuple[Rollout, list[float]]:
    """n trials with uniform tasks; reward = a made-up smooth function of the actions."""
    tasks = torch.randint(controller.num_tasks, (n,), generator=generator)
    rollout = controller.sample(tasks, generator)
    rewards = [0.1 + 0.2 * a[0] + 0.1 * a[-1] + 0.05 * t for a, t in zip(rollout.actions.tolist(), tasks.tolist(), strict=True)]
    return rollout, rewards


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# -- PPO: pure helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "advantage", "objective"),
    [
        (1.1, 2.0, 2.2),  # inside [0.8, 1.2]: min(1.1 * 2, 1.1 * 2) = 2.2
        (1.1, -2.0, -2.2),  # inside: min(-2.2, -2.2) = -2.2
        (1.5, 2.0, 2.4),  # above, A > 0: min(1.5 * 2 = 3.0, 1.2 * 2 = 2.4) = 2.4 (clipped)
        (1.5, -2.0, -3.0),  # above, A < 0: min(-3.0, 1.2 * -2 = -2.4) = -3.0 (unclipped)
        (0.5, 2.0, 1.0),  # below, A > 0: min(0.5 * 2 = 1.0, 0.8 * 2 = 1.6) = 1.0 (unclipped)
        (0.5, -2.0, -1.6),  # below, A < 0: min(-1.0, 0.8 * -2 = -1.6) = -1.6 (clipped)
    ],
)
def test_clipped_surrogate_loss_single_sample(ratio, advantage, objective):
    behaviour = torch.tensor([-1.3])
    log_probs = behaviour + math.log(ratio)  # so that exp(log_probs - behaviour) = ratio
    loss = clipped_surrogate_loss(log_probs, behaviour, torch.tensor([advantage]), clip=0.2)
    assert float(loss) == pytest.approx(-objective, rel=1e-5)


def test_clipped_surrogate_loss_batch_value_and_gradient():
    ratios = [1.1, 1.1, 1.5, 1.5, 0.5, 0.5]
    advantages = torch.tensor([2.0, -2.0, 2.0, -2.0, 2.0, -2.0])
    behaviour = torch.tensor([-1.0, -2.0, -0.5, -3.0, -1.5, -0.7])
    log_probs = (behaviour + torch.tensor(ratios).log()).requires_grad_(True)
    loss = clipped_surrogate_loss(log_probs, behaviour, advantages, clip=0.2)
    # objectives 2.2 - 2.2 + 2.4 - 3.0 + 1.0 - 1.6 = -1.2; loss = -(-1.2 / 6) = 0.2
    assert float(loss.detach()) == pytest.approx(0.2, rel=1e-5)
    loss.backward()
    # Unclipped terms: d(-r A / 6)/d log pi = -r A / 6; the clipped ones are constant (gradient 0).
    expected = torch.tensor([-2.2, 2.2, 0.0, 3.0, -1.0, 0.0]) / 6
    assert torch.allclose(log_probs.grad, expected, atol=1e-6)


def test_polyak_update_by_hand():
    target, source = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        target.weight.copy_(torch.tensor([[1.0, 2.0]]))
        target.bias.copy_(torch.tensor([3.0]))
        source.weight.copy_(torch.tensor([[5.0, -2.0]]))
        source.bias.copy_(torch.tensor([-1.0]))
    polyak_update(target, source, weight=0.9)
    # 0.9 * 1 + 0.1 * 5 = 1.4; 0.9 * 2 + 0.1 * -2 = 1.6; 0.9 * 3 + 0.1 * -1 = 2.6
    assert torch.allclose(target.weight, torch.tensor([[1.4, 1.6]]))
    assert torch.allclose(target.bias, torch.tensor([2.6]))
    assert torch.equal(source.weight, torch.tensor([[5.0, -2.0]]))  # the source is untouched
    with pytest.raises(ValueError, match="same tensors"):
        polyak_update(target, nn.Linear(2, 1, bias=False), weight=0.9)


def test_polyak_update_averages_float_buffers_and_keeps_integer_ones():
    target, source = nn.Linear(1, 1), nn.Linear(1, 1)
    target.register_buffer("scale", torch.tensor([10.0]))
    source.register_buffer("scale", torch.tensor([0.0]))
    target.register_buffer("binding", torch.tensor([2, -1]))
    source.register_buffer("binding", torch.tensor([0, 0]))
    polyak_update(target, source, weight=0.75)
    assert torch.allclose(target.scale, torch.tensor([7.5]))  # 0.75 * 10 + 0.25 * 0
    assert torch.equal(target.binding, torch.tensor([2, -1]))  # structure, not a weight


def test_ppo_config_defaults_and_validation():
    c = PPOConfig()
    assert (c.learning_rate, c.batch_size, c.gradient_steps, c.clip, c.polyak) == (5e-4, 20, 25, 0.2, 0.9)
    assert PPOConfig(**c.to_dict()) == c
    with pytest.raises(ConfigError, match="clip"):
        PPOConfig(clip=0.0)
    with pytest.raises(ConfigError, match="polyak"):
        PPOConfig(polyak=1.5)
    with pytest.raises(ConfigError, match="batch_size"):
        PPO(_controller(), {"batch_size": 0})


# -- PPO: the rule -----------------------------------------------------------------------------


def _adam_steps(rule: PPO) -> set[int]:
    return {int(rule.optimizer.state[p]["step"]) if p in rule.optimizer.state else 0 for p in rule.learner.parameters()}


def test_ppo_trains_every_update_every_samples_then_polyak_averages_the_actor():
    actor = _controller()
    rule = PPO(actor, PPOConfig(update_every=20, batch_size=4, gradient_steps=3, learning_rate=1e-2))
    g = torch.Generator().manual_seed(1)
    initial = _weights(actor)

    for n_seen in (7, 14):  # fewer than 20 new samples: bank grows, nothing trains
        metrics = rule.update(actor, *_round(actor, g, 7))
        assert metrics["controller/trained"] == 0.0
        assert metrics["controller/replay_size"] == n_seen
        assert _adam_steps(rule) == {0}
        assert all(torch.equal(initial[k], v) for k, v in _weights(actor).items())

    actor_before = _weights(actor)
    metrics = rule.update(actor, *_round(actor, g, 7))  # 21 new samples: train
    assert metrics["controller/trained"] == 1.0 and metrics["controller/replay_size"] == 21
    assert _adam_steps(rule) == {3}  # exactly gradient_steps Adam steps on every learner tensor
    assert rule.new_samples == 0 and rule.trainings == 1
    learner = _weights(rule.learner)
    for k, v in _weights(actor).items():  # theta_actor = 0.9 theta_actor_before + 0.1 theta_learner
        assert torch.allclose(v, 0.9 * actor_before[k] + 0.1 * learner[k], atol=1e-7), k
    assert any(not torch.equal(actor_before[k], learner[k]) for k in learner)  # the learner moved
    for key in ("controller/loss", "controller/ratio_mean", "controller/clip_fraction", "controller/entropy"):
        assert math.isfinite(metrics[key])

    assert rule.update(actor, *_round(actor, g, 10))["controller/trained"] == 0.0
    assert _adam_steps(rule) == {3}
    assert rule.update(actor, *_round(actor, g, 10))["controller/trained"] == 1.0
    assert _adam_steps(rule) == {6}


def test_ppo_replay_bank_is_fifo_capped_and_stores_insertion_values():
    actor = _controller()
    rule = PPO(actor, PPOConfig(replay_size=10, update_every=1000))
    reference = TaskBaselines(2, decay=0.95, min_std=0.02, normalization="std")
    rows, tasks, advantages, behaviour = [], [], [], []
    g = torch.Generator().manual_seed(3)
    for _ in range(3):  # 12 samples into a bank of 10
        rollout, rewards = _round(actor, g, 4)
        rule.update(actor, rollout, rewards)
        rows += rollout.actions.tolist()
        tasks += rollout.tasks.tolist()
        advantages += reference.advantages(rollout.tasks.tolist(), rewards)
        behaviour += actor.log_prob(rollout.actions, rollout.tasks)[0].tolist()
    assert rule.replay_len == 10
    assert rule.replay_actions.tolist() == rows[2:]  # the two oldest were evicted
    assert rule.replay_tasks.tolist() == tasks[2:]
    assert torch.allclose(rule.replay_advantages, torch.tensor(advantages[2:]))
    assert torch.allclose(rule.replay_behaviour_log_probs, torch.tensor(behaviour[2:]), atol=1e-6)
    rule.reset_replay()
    assert rule.replay_len == 0 and rule.new_samples == 0


def test_ppo_learner_starts_from_the_actor_loaded_after_construction():
    actor = _controller(seed=0)
    rule = PPO(actor, PPOConfig(update_every=1000))
    actor.load_state_dict(_controller(seed=5).state_dict())  # as transfer does after building the rule
    rule.update(actor, *_round(actor, torch.Generator().manual_seed(0), 2))
    assert all(torch.equal(v, _weights(actor)[k]) for k, v in _weights(rule.learner).items())


def test_ppo_state_dict_round_trip_continues_identically():
    config = PPOConfig(update_every=6, batch_size=5, gradient_steps=2, replay_size=15, learning_rate=1e-2)
    actor = _controller()
    rule = PPO(actor, config)
    g = torch.Generator().manual_seed(4)
    for _ in range(5):  # trainings at 8 and 16 samples; 4 new samples waiting
        rule.update(actor, *_round(actor, g, 4))
    saved = _round_trip({"actor": actor.state_dict(), "rule": rule.state_dict()})

    actor2 = _controller(seed=9)
    actor2.load_state_dict(saved["actor"])
    rule2 = PPO(actor2, config.to_dict())
    rule2.load_state_dict(saved["rule"])
    g2 = copy.deepcopy(g)
    for _ in range(3):
        m1 = rule.update(actor, *_round(actor, g, 4))
        m2 = rule2.update(actor2, *_round(actor2, g2, 4))
        assert m1 == m2
    assert rule.trainings == rule2.trainings == 4
    for a, b in ((actor, actor2), (rule.learner, rule2.learner)):
        assert all(torch.equal(v, _weights(b)[k]) for k, v in _weights(a).items())


# -- PQT ----------------------------------------------------------------------------------------


def test_priority_queue_keeps_top_k_unique_with_max_reward():
    q = PriorityQueue(3)
    assert q.push([0, 1], 0.5) and q.push([1, 1], 0.7) and q.push([2, 0], 0.2)
    assert q.items() == [(0.7, (1, 1)), (0.5, (0, 1)), (0.2, (2, 0))]
    assert not q.push([0, 1], 0.1)  # duplicate with a lower reward: unchanged
    assert q.push([2, 0], 0.9)  # duplicate with a higher reward: keeps the max, moves up
    assert q.items() == [(0.9, (2, 0)), (0.7, (1, 1)), (0.5, (0, 1))]
    assert q.push([3, 3], 0.6)  # beats the worst (0.5), which is evicted
    assert q.items() == [(0.9, (2, 0)), (0.7, (1, 1)), (0.6, (3, 3))]
    assert not q.push([4, 4], 0.6)  # ties the worst: the incumbent stays
    assert not q.push([5, 5], 0.1)  # worse than all
    assert len(q) == 3
    restored = PriorityQueue.from_state(_round_trip(q.state()))
    assert restored.items() == q.items() and restored.capacity == 3
    with pytest.raises(ValueError, match="reward"):
        q.push([0, 0], float("nan"))


def test_pqt_config_defaults_follow_the_paper():
    c = PQTConfig()
    assert (c.learning_rate, c.top_k, c.pqt_weight, c.entropy_weight) == (5e-4, 25, 5.0, 0.15)
    assert PQTConfig(**c.to_dict()) == c
    with pytest.raises(ConfigError, match="top_k"):
        PQTConfig(top_k=0)


def test_pqt_loss_is_the_sum_of_its_three_terms():
    controller = _controller(cardinalities=(3, 2))
    reference = copy.deepcopy(controller)
    rule = PQT(controller, PQTConfig(top_k=2, learning_rate=1e-2, seed=11))
    # Baselines before the round: task 0 mean 0.5, sigma sqrt(0.04) = 0.2; task 1 mean 0.4, sigma 0.1.
    rule.baselines = TaskBaselines(2, decay=0.95, min_std=0.02, mean=[0.5, 0.4], var=[0.04, 0.01], count=[3, 3])
    rule.queues[1].push([2, 1], 0.9)  # seen before this round
    tasks, actions, rewards = [0, 1, 0], [[0, 1], [1, 0], [2, 0]], [0.2, 0.5, 0.8]
    # A' = (0.2 - 0.5) / 0.2 = -1.5, (0.5 - 0.4) / 0.1 = 1.0, (0.8 - 0.5) / 0.2 = 1.5
    advantages = torch.tensor([-1.5, 1.0, 1.5])
    # Queues after the pushes, best first: task 0 [[2, 0] (0.8), [0, 1] (0.2)]; task 1 [[2, 1] (0.9), [1, 0] (0.5)]
    queues = {0: [[2, 0], [0, 1]], 1: [[2, 1], [1, 0]]}
    draw = torch.Generator().manual_seed(11)  # the rule's generator: one uniform index per trial
    drawn = [queues[t][int(torch.randint(2, (1,), generator=draw))] for t in tasks]

    metrics = rule.update(controller, _rollout(tasks, actions), rewards)

    assert [a for _, a in rule.queues[0].items()] == [(2, 0), (0, 1)]
    assert [a for _, a in rule.queues[1].items()] == [(2, 1), (1, 0)]
    log_probs, entropies = reference.log_prob(torch.tensor(actions), torch.tensor(tasks))
    queue_log_probs, _ = reference.log_prob(torch.tensor(drawn), torch.tensor(tasks))
    reinforce = (advantages * log_probs).mean()  # J
    likelihood = queue_log_probs.mean()  # L
    entropy = (entropies / 2).mean()  # H: per-decision entropy, M = 2 decisions
    expected = -reinforce - 5.0 * likelihood - 0.15 * entropy
    assert sampled_decisions(reference, torch.tensor(actions)).tolist() == [2.0, 2.0, 2.0]
    assert metrics["controller/loss"] == pytest.approx(float(expected.detach()), rel=1e-5)
    assert metrics["controller/pqt_log_likelihood"] == pytest.approx(float(likelihood.detach()), rel=1e-5)
    assert metrics["controller/entropy_per_decision"] == pytest.approx(float(entropy.detach()), rel=1e-5)
    # The step is one Adam step on that loss.
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)
    expected.backward()
    optimizer.step()
    for k, v in _weights(reference).items():
        assert torch.allclose(v, _weights(controller)[k], atol=1e-6), k


def test_pqt_state_dict_round_trip_continues_identically():
    config = PQTConfig(top_k=3, learning_rate=1e-2)
    controller = _controller()
    rule = PQT(controller, config)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        rule.update(controller, *_round(controller, g, 5))
    saved = _round_trip({"controller": controller.state_dict(), "rule": rule.state_dict()})

    controller2 = _controller(seed=9)
    controller2.load_state_dict(saved["controller"])
    rule2 = PQT(controller2, config.to_dict())
    rule2.load_state_dict(saved["rule"])
    assert [q.items() for q in rule2.queues] == [q.items() for q in rule.queues]
    g2 = copy.deepcopy(g)
    for _ in range(3):
        assert rule.update(controller, *_round(controller, g, 5)) == rule2.update(controller2, *_round(controller2, g2, 5))
    assert all(torch.equal(v, _weights(controller2)[k]) for k, v in _weights(controller).items())


# -- learning on a toy two-task reward ------------------------------------------------------------

TARGET = {0: 0, 1: 3}  # reward 1 when decision 0 picks TARGET[task]


def _samples_to_learn(rule_cls: type, config: dict, seed: int, budget: int, per_round: int = 10) -> int | None:
    """Samples until pi(decision 0 = target | task) > 0.9 for both tasks; None if not within budget."""
    controller = _controller(seed=seed)
    rule = rule_cls(controller, config)
    generator = torch.Generator().manual_seed(seed)
    for seen in range(per_round, budget + 1, per_round):
        tasks = torch.randint(2, (per_round,), generator=generator)
        rollout = controller.sample(tasks, generator)
        rewards = [float(a[0] == TARGET[t]) for a, t in zip(rollout.actions.tolist(), tasks.tolist(), strict=True)]
        rule.update(controller, rollout, rewards)
        if all(controller.choice_probabilities(t, 0)[TARGET[t]] > 0.9 for t in TARGET):
            return seen
    return None


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("rule_cls", "config"),
    [
        (PPO, {"learning_rate": 2e-3}),  # paper's batch 20, 25 steps, clip 0.2, Polyak 0.9
        # K must be smaller than the number of rewarded sequences (3 * 2 = 6): with K >= all 24
        # sequences the queue holds everything and the PQT term pulls toward uniform.
        (PQT, {"learning_rate": 2e-3, "top_k": 5}),
    ],
    ids=["ppo", "pqt"],
)
@pytest.mark.slow
def test_rule_learns_a_different_choice_per_task(rule_cls, config, seed):
    # Seen: PPO reaches 0.9 within 780-1100 samples, PQT within 700-830 (seeds 0-3).
    assert _samples_to_learn(rule_cls, config, seed, budget=2000) is not None

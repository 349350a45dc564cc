from __future__ import annotations

import pytest
import torch

from transfer_automl.algorithms import ReinforceConfig
from transfer_automl.controllers import LSTMController, LSTMControllerConfig
from transfer_automl.search import ReinforceSearch
from transfer_automl.space import MNMS_TEXT, TAML_TEXT, Decision, SearchSpace


@pytest.mark.parametrize("space", [TAML_TEXT, MNMS_TEXT], ids=lambda s: s.name)
def test_samples_are_in_range_reproducible_and_finite(space):
    torch.manual_seed(0)
    controller = LSTMController(space.cardinalities, num_tasks=3)
    tasks = torch.tensor([0, 1, 2, 0, 1, 2])
    a = controller.sample(tasks, torch.Generator().manual_seed(7))
    b = controller.sample(tasks, torch.Generator().manual_seed(7))
    c = controller.sample(tasks, torch.Generator().manual_seed(8))
    assert torch.equal(a.actions, b.actions)
    assert not torch.equal(a.actions, c.actions)
    assert a.actions.shape == (6, len(space))
    for row in a.actions.tolist():
        space.decode(row)  # raises if any index is out of range
    assert torch.isfinite(a.log_probs).all() and torch.isfinite(a.entropies).all()
    # Teacher-forced log-probs agree with the ones recorded while sampling.
    log_probs, entropies = controller.log_prob(a.actions, tasks)
    assert torch.allclose(log_probs, a.log_probs, atol=1e-5)
    assert torch.allclose(entropies, a.entropies, atol=1e-5)


def test_architecture_matches_the_papers():
    controller = LSTMController(TAML_TEXT.cardinalities, num_tasks=4)
    assert controller.lstm.num_layers == 2 and controller.lstm.hidden_size == 50
    assert controller.lstm.input_size == 25 + 25
    assert controller.task_embeddings.weight.shape == (4, 25)
    assert [h.out_features for h in controller.heads] == TAML_TEXT.cardinalities
    for p in controller.parameters():
        assert p.abs().max() <= 0.08
    # Uniform init in [-0.08, 0.08] gives a near-uniform initial policy.
    probs = controller.choice_probabilities(task=0, decision=0)
    assert torch.allclose(probs, torch.full_like(probs, 1 / len(probs)), atol=0.05)


def test_skip_connection_feeds_the_step_input_to_the_heads():
    torch.manual_seed(0)
    with_skip = LSTMController([3, 3], num_tasks=1)
    without = LSTMController([3, 3], num_tasks=1, config=LSTMControllerConfig(skip_connection=False))
    without.load_state_dict(with_skip.state_dict())
    actions, tasks = torch.tensor([[1, 2]]), torch.tensor([0])
    assert not torch.allclose(with_skip.log_prob(actions, tasks)[0], without.log_prob(actions, tasks)[0])


def test_task_embedding_conditions_the_policy():
    torch.manual_seed(0)
    controller = LSTMController([4, 4], num_tasks=2)
    with torch.no_grad():
        controller.task_embeddings.weight[1] += 1.0
    assert not torch.allclose(controller.choice_probabilities(0, 0), controller.choice_probabilities(1, 0))


TOY = SearchSpace("toy", (Decision("a", (0, 1, 2, 3)), Decision("b", ("x", "y", "z")), Decision("c", (True, False))))
PREFERRED = {"t0": 0, "t1": 3}  # each task rewards a different choice of decision "a"


def _train_two_task(batch_size: int, learning_rate: float, max_updates: int, seed: int):
    search = ReinforceSearch(TOY, ["t0", "t1"], "toy", seed=seed,
                             update_config=ReinforceConfig(learning_rate=learning_rate))
    for update in range(1, max_updates + 1):
        trials = search.ask(batch_size)
        search.tell(trials, [1.0 if t.config["a"] == PREFERRED[t.task] else 0.0 for t in trials])
        p0 = search.controller.choice_probabilities(0, 0)[PREFERRED["t0"]].item()
        p1 = search.controller.choice_probabilities(1, 0)[PREFERRED["t1"]].item()
        if p0 > 0.9 and p1 > 0.9:
            return update, p0, p1
    return None, p0, p1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multitask_controller_learns_a_different_choice_per_task(seed):
    updates, p0, p1 = _train_two_task(batch_size=8, learning_rate=0.02, max_updates=150, seed=seed)
    assert updates is not None, f"P(right choice) only reached t0={p0:.2f}, t1={p1:.2f} in 150 updates"


@pytest.mark.parametrize("seed", [0, 2])
def test_paper_setting_one_child_per_update_also_learns(seed):
    # One child per update, as in Transfer AutoML. Learning rates of 0.05 and above make this toy
    # collapse onto one choice for both tasks before the task embeddings separate them.
    updates, p0, p1 = _train_two_task(batch_size=1, learning_rate=0.02, max_updates=400, seed=seed)
    assert updates is not None, f"P(right choice) only reached t0={p0:.2f}, t1={p1:.2f} in 400 updates"


def test_without_reward_signal_the_policy_stays_near_uniform():
    search = ReinforceSearch(TOY, ["t0", "t1"], "toy", seed=0, update_config=ReinforceConfig(learning_rate=0.02))
    for _ in range(50):
        trials = search.ask(8)
        search.tell(trials, [0.5] * len(trials))  # constant reward: zero advantage
    probs = search.controller.choice_probabilities(0, 0)
    assert probs.max() < 0.35

"""The Transfer NAS attention agent: controller interface over plain, conditional and merged
spaces, transfer, shared-by-name parameters, and the double-XOR toy against the LSTM agent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import transfer_automl.controllers.transformer  # noqa: F401  registers "transformer"
from example_spaces import OPT  # noqa: E402  (tests/ is on the path, like s3_fixtures)
from transfer_automl.algorithms import Reinforce
from transfer_automl.controllers import CONTROLLERS, build_controller
from transfer_automl.controllers.transformer import (
    TransformerController,
    TransformerControllerConfig,
    decision_key,
)
from transfer_automl.errors import ConfigError, SearchSpaceError
from transfer_automl.space import (
    MNMS_TEXT,
    TAML_TEXT,
    Condition,
    Decision,
    SearchSpace,
    merge_spaces,
    subspace_choice_for,
)

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks/ is imported from the checkout (it is not in the wheel)

from benchmarks.double_xor import (  # noqa: E402
    DoubleXorSettings,
    double_xor_reward,
    moving_average,
    samples_to_threshold,
    train_agent,
)

CNN = SearchSpace("cnn", (
    Decision("filters", (16, 32)),
    Decision("opt", ("sgd", "adam")),
    Decision("beta", (0.9, 0.99), condition=Condition("opt", ("adam",))),
    Decision("fc_units", (64, 128)),
))
FFN = SearchSpace("ffn", (Decision("layers", (1, 2, 3)), Decision("fc_units", (64, 128))))
MERGED = merge_spaces([CNN, FFN])
SPACES = [TAML_TEXT, MNMS_TEXT, OPT, MERGED]



def _controller(space: SearchSpace, num_tasks: int = 3, seed: int = 0, **config) -> TransformerController:
    """A controller whose output layers are random, as after some training (they start at 0)."""
    torch.manual_seed(seed)
    controller = TransformerController(space, num_tasks, TransformerControllerConfig(**config))
    with torch.no_grad():
        for module in controller.decisions.values():
            module.head.weight.normal_(0.0, 0.3)
    return controller


# -- interface (the same checks as the LSTM's) ------------------------------------------------


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_samples_in_range_respect_conditions_and_are_reproducible(space):
    controller = _controller(space)
    tasks = torch.tensor([0, 1, 2] * 20)
    a = controller.sample(tasks, torch.Generator().manual_seed(7))
    b = controller.sample(tasks, torch.Generator().manual_seed(7))
    c = controller.sample(tasks, torch.Generator().manual_seed(8))
    assert torch.equal(a.actions, b.actions) and torch.equal(a.log_probs, b.log_probs)
    assert not torch.equal(a.actions, c.actions)
    assert a.actions.shape == (60, len(space)) and a.actions.dtype == torch.long
    for row in a.actions.tolist():
        active = space.active(row)
        assert [x != -1 for x in row] == active  # -1 exactly where inactive
        space.decode(row)  # raises if an index is out of range or misplaced
    assert torch.isfinite(a.log_probs).all() and torch.isfinite(a.entropies).all()
    log_probs, entropies = controller.log_prob(a.actions, tasks)
    assert torch.allclose(log_probs, a.log_probs, atol=1e-5)
    assert torch.allclose(entropies, a.entropies, atol=1e-5)
    assert log_probs.requires_grad


def test_conditional_samples_cover_every_branch():
    controller = _controller(OPT, num_tasks=1)
    rollout = controller.sample(torch.zeros(400, dtype=torch.long), torch.Generator().manual_seed(0))
    actions = rollout.actions
    assert set(actions[:, 1].tolist()) == {0, 1, 2}
    assert ((actions[:, 1] == 0) == (actions[:, 2] >= 0)).all()  # momentum iff sgd
    assert ((actions[:, 1] == 1) == (actions[:, 3] >= 0)).all()  # beta iff adam
    assert ((actions[:, 3] == 1) == (actions[:, 4] >= 0)).all()  # beta2 iff beta = 0.99
    # inactive decisions add nothing: fewer active decisions, smaller summed entropy
    adagrad = actions[:, 1] == 2
    assert rollout.entropies[adagrad].max() < rollout.entropies[~adagrad].min()


def test_log_prob_rejects_actions_that_break_the_conditions():
    controller = _controller(OPT, num_tasks=1)
    tasks = torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="'momentum'.*inactive, which needs -1"):
        controller.log_prob(torch.tensor([[0, 1, 0, 0, -1]]), tasks)
    with pytest.raises(ValueError, match="'beta'.*active"):
        controller.log_prob(torch.tensor([[0, 1, -1, -1, -1]]), tasks)
    with pytest.raises(ValueError, match=r"\[n, 5\]"):
        controller.log_prob(torch.tensor([[0, 1]]), tasks)


def test_later_actions_do_not_change_earlier_step_probabilities():
    controller = _controller(MNMS_TEXT, num_tasks=1)
    a = torch.tensor([[0, 1, 2, 3, 0, 1, 2]])
    b = a.clone()
    b[0, 4:] = torch.tensor([3, 3, 3])
    tasks = torch.zeros(1, dtype=torch.long)
    steps_a, steps_b = controller.step_log_probs(a, tasks), controller.step_log_probs(b, tasks)
    for t in range(5):  # step t sees actions < t only
        assert torch.allclose(steps_a[t], steps_b[t], atol=1e-6)
    assert not torch.allclose(steps_a[5], steps_b[5])


def test_uniform_mix_changes_sampling_frequencies_but_not_recorded_log_probs():
    controller = _controller(MNMS_TEXT, num_tasks=1)
    with torch.no_grad():
        controller.decision_parameters("embedding_table").head.bias.copy_(torch.tensor([6.0, -6.0]))
    tasks = torch.zeros(4000, dtype=torch.long)
    pure = controller.sample(tasks, torch.Generator().manual_seed(1))
    mixed = controller.sample(tasks, torch.Generator().manual_seed(1), uniform_mix=0.5)
    assert (pure.actions[:, 0] == 1).float().mean() < 0.01
    assert 0.2 < (mixed.actions[:, 0] == 1).float().mean() < 0.3  # 0.5 * pi + 0.5 * 1/2
    log_probs, _ = controller.log_prob(mixed.actions, tasks)
    assert torch.allclose(log_probs, mixed.log_probs, atol=1e-5)


# -- architecture and registry ----------------------------------------------------------------


def test_architecture_follows_the_paper_and_starts_uniform():
    torch.manual_seed(0)
    controller = TransformerController(TAML_TEXT, 4)
    assert controller.kind == "transformer" and controller.num_tasks == 4
    layers = controller.encoder.layers
    assert len(layers) == 2 and layers[0].self_attn.num_heads == 1
    assert layers[0].self_attn.embed_dim == 24  # [action ; task ; state], 8 each
    assert controller.task_embeddings.weight.shape == (4, 8)
    assert controller.positions.shape == (len(TAML_TEXT), 24)
    for name, n in zip(TAML_TEXT.names, TAML_TEXT.cardinalities, strict=True):
        params = controller.decision_parameters(name)
        assert params.head.out_features == n and params.action.num_embeddings == n + 1  # + "inactive"
    for decision in range(len(TAML_TEXT)):
        probs = controller.choice_probabilities(task=0, decision=decision)
        assert torch.allclose(probs, torch.full_like(probs, 1 / len(probs)), atol=1e-6)


def test_registered_and_built_from_a_config_dict():
    assert "transformer" in CONTROLLERS
    controller = build_controller("transformer", MERGED, 2, {"embedding_size": 4, "task_spaces": ["ffn", "cnn"]})
    assert isinstance(controller, TransformerController)
    config = controller.config.to_dict()
    assert config["embedding_size"] == 4 and config["task_spaces"] == ["ffn", "cnn"]
    rebuilt = build_controller("transformer", MERGED, 2, config)  # as a checkpoint does
    assert rebuilt.config == controller.config
    with pytest.raises(ConfigError, match="bogus"):
        build_controller("transformer", MNMS_TEXT, 1, {"bogus": 1})
    with pytest.raises(ConfigError, match="num_heads"):
        build_controller("transformer", MNMS_TEXT, 1, {"num_heads": 5})
    with pytest.raises(SearchSpaceError, match="conditions"):
        build_controller("lstm", MERGED, 1, {})


def test_decision_keys_escape_dots_and_avoid_module_attributes():
    space = SearchSpace("odd", (Decision("a.b", (1, 2)), Decision("keys", (1, 2)), Decision("a%2Eb", (1, 2))))
    controller = _controller(space, num_tasks=1)
    assert len({decision_key(n) for n in space.names}) == 3
    assert controller.sample(torch.zeros(3, dtype=torch.long)).actions.shape == (3, 3)


# -- merged spaces ----------------------------------------------------------------------------


def test_bound_tasks_fix_the_root_and_it_adds_no_log_prob():
    controller = _controller(MERGED, num_tasks=3, task_spaces=("cnn", "ffn", "ffn"))
    tasks = torch.tensor([0, 1, 2] * 30)
    rollout = controller.sample(tasks, torch.Generator().manual_seed(0))
    roots = rollout.actions[:, 0]
    assert torch.equal(roots, torch.tensor([subspace_choice_for(MERGED, s) for s in ("cnn", "ffn", "ffn")] * 30))
    for row in rollout.actions.tolist():
        MERGED.decode(row)
    ffn_rows = rollout.actions[tasks != 0]
    assert (ffn_rows[:, MERGED.position("filters")] == -1).all()
    assert (ffn_rows[:, MERGED.position("layers")] >= 0).all()
    log_probs, entropies = controller.log_prob(rollout.actions, tasks)
    assert torch.allclose(log_probs, rollout.log_probs, atol=1e-5)
    # free root: the same actions score lower, by the root's own log-prob
    controller.set_task_spaces(())
    assert controller.config.task_spaces == ()
    free_log_probs, _ = controller.log_prob(rollout.actions, tasks)
    assert (free_log_probs < log_probs).all()
    controller.set_task_spaces(["cnn", "ffn", "ffn"])
    assert torch.equal(controller.choice_probabilities(1, 0), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="another source space"):  # an ffn trial for the cnn task
        controller.log_prob(rollout.actions[1:2], torch.tensor([0]))
    with pytest.raises(ConfigError, match="2 spaces for 3 tasks"):
        controller.set_task_spaces(["cnn", "ffn"])
    with pytest.raises(SearchSpaceError, match="no source space 'rnn'"):
        controller.set_task_spaces(["cnn", "ffn", "rnn"])
    with pytest.raises(ConfigError, match="merged space"):
        _controller(MNMS_TEXT, num_tasks=1, task_spaces=("cnn",))


def test_shared_decisions_use_one_set_of_parameters_under_every_space():
    controller = _controller(MERGED, num_tasks=2, task_spaces=("cnn", "ffn"))
    assert len(controller.decisions) == len(MERGED)  # one module per decision name
    shared = controller.decision_parameters("fc_units")
    fc = MERGED.position("fc_units")
    for task in (0, 1):
        controller.zero_grad()
        rollout = controller.sample(torch.tensor([task]), torch.Generator().manual_seed(task))
        assert rollout.actions[0, fc] >= 0
        controller.log_prob(rollout.actions, rollout.tasks)[0].sum().backward()
        assert shared.head.weight.grad is not None and shared.head.weight.grad.abs().sum() > 0
        assert shared.state.grad.abs().sum() > 0
    # a decision only the cnn has gets no gradient from an ffn trial
    assert controller.decision_parameters("filters").head.weight.grad.abs().sum() == 0


def test_reinforce_learns_a_different_shared_choice_per_space():
    controller = _controller(MERGED, num_tasks=2, task_spaces=("cnn", "ffn"))
    rule = Reinforce(controller, {"learning_rate": 0.03})
    fc = MERGED.position("fc_units")
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        rollout = controller.sample(torch.tensor([0, 1] * 4), generator)
        rewards = [float(a[fc] == t) for a, t in zip(rollout.actions.tolist(), rollout.tasks.tolist(), strict=True)]
        rule.update(controller, rollout, rewards)
    cnn_prefix = [0, 0, 0, -1]  # cnn, 16 filters, sgd, beta inactive
    ffn_prefix = [1, -1, -1, -1]
    assert controller.choice_probabilities(0, fc, cnn_prefix)[0] > 0.9
    assert controller.choice_probabilities(1, fc, ffn_prefix)[1] > 0.9


def test_choice_probabilities_checks_the_prefix():
    controller = _controller(MERGED, num_tasks=1)
    with pytest.raises(ValueError, match="'filters' is inactive"):
        controller.choice_probabilities(0, MERGED.position("filters"), [1])
    with pytest.raises(ValueError, match="needs the 3 actions"):
        controller.choice_probabilities(0, 3, [0])
    assert controller.choice_probabilities(0, 0).shape == (2,)  # a free root is sampled


# -- transfer ---------------------------------------------------------------------------------


def test_load_transferred_keeps_known_tasks_and_leaves_new_ones_random():
    old = _controller(MERGED, num_tasks=2, seed=1, task_spaces=("cnn", "ffn"))
    new = _controller(MERGED, num_tasks=3, seed=2, task_spaces=("ffn", "cnn", "ffn"))
    fresh = new.task_embeddings.weight.detach().clone()
    new.load_transferred(old.state_dict(), old_tasks=["a", "b"], new_tasks=["b", "c", "a"])
    emb = new.task_embeddings.weight.detach()
    assert torch.equal(emb[0], old.task_embeddings.weight[1].detach())
    assert torch.equal(emb[2], old.task_embeddings.weight[0].detach())
    assert torch.equal(emb[1], fresh[1])  # the new task keeps its random init
    assert not torch.allclose(emb[1], old.task_embeddings.weight.detach()[0])
    assert not torch.allclose(emb[1], old.task_embeddings.weight.detach()[1])
    for key, value in old.state_dict().items():
        if key != "task_embeddings.weight":
            assert torch.equal(new.state_dict()[key], value), key
    # the known task's policy is the pretrained one
    assert torch.allclose(new.choice_probabilities(0, 4, [1, -1, -1, -1]), old.choice_probabilities(1, 4, [1, -1, -1, -1]))


def test_load_transferred_to_another_space_reuses_decisions_by_name():
    old = _controller(FFN, num_tasks=1, seed=1)
    new = _controller(MERGED, num_tasks=1, seed=2)
    filters_before = new.decision_parameters("filters").head.weight.detach().clone()
    new.load_transferred(old.state_dict(), ["t"], ["t"])
    for name in ("layers", "fc_units"):  # shared by name: copied
        for mine, theirs in zip(new.decision_parameters(name).parameters(), old.decision_parameters(name).parameters(), strict=True):
            assert torch.equal(mine, theirs)
    assert torch.equal(new.decision_parameters("filters").head.weight, filters_before)  # new: fresh
    assert torch.equal(new.positions[:2], old.positions)  # positions both spaces have
    assert torch.equal(new.encoder.layers[1].linear1.weight, old.encoder.layers[1].linear1.weight)
    # a decision of the same name with other choices does not fit
    other = SearchSpace("other", (Decision("fc_units", (64, 128, 256)),))
    with pytest.raises(ValueError, match="fc_units"):
        _controller(other, num_tasks=1).load_transferred(old.state_dict(), ["t"], ["t"])
    with pytest.raises(ValueError, match="does not fit"):
        _controller(FFN, num_tasks=1, embedding_size=4).load_transferred(old.state_dict(), ["t"], ["t"])


# -- double XOR -------------------------------------------------------------------------------


def test_double_xor_reward_and_curve_helpers():
    actions = torch.tensor([[0, 0, 0, 0, 1, 0, 1], [1, 0, 0, 0, 1, 0, 1], [1, 1, 1, 1, 0, 1, 0], [0] * 7])
    assert double_xor_reward(actions).tolist() == [1.0, 0.0, 1.0, 0.0]
    assert double_xor_reward(actions, "mean").tolist() == [1.0, 0.5, 1.0, 0.0]
    assert moving_average([1, 0, 1, 1], 2) == [1.0, 0.5, 0.5, 1.0]
    assert samples_to_threshold([1.0, 0.5, 0.5, 1.0], 0.9, 2) == 4  # the first full window is ignored
    assert samples_to_threshold([0.1, 0.2], 0.9, 1) is None


@pytest.mark.slow
def test_double_xor_attention_agent_learns_faster_than_the_lstm():
    # Measured over 12 seeds at 240 samples, lr 0.01, batch 8 (mean final 100-sample moving
    # average): transformer 0.94, LSTM 0.66; seeds 0-5 and 6-11 each keep a gap of 0.2 or more.
    settings = DoubleXorSettings(samples=240, batch_size=8, learning_rates={"lstm": 0.01, "transformer": 0.01})
    final = {}
    for kind in ("lstm", "transformer"):
        finals = [moving_average(train_agent(kind, settings, seed), settings.window)[-1] for seed in range(6)]
        final[kind] = sum(finals) / len(finals)
    assert final["transformer"] > 0.85
    assert final["transformer"] > final["lstm"] + 0.1, final
    assert final["lstm"] > 0.25  # both beat a uniform policy's expected reward

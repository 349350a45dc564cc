"""Transfer of a pretrained controller to new tasks (Transfer AutoML, section 2.3; Transfer NAS):
shared weights and known task embeddings are copied, new tasks get fresh embeddings, the policy is
mixed with the uniform distribution for the first samples, and the update rule starts fresh
unless asked to keep its state."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from transfer_automl.controllers import LSTMController
from transfer_automl.errors import ConfigError
from transfer_automl.search import ControllerSearch, load_checkpoint, make_search, save_checkpoint
from transfer_automl.space import Decision, SearchSpace

TOY = SearchSpace("toy", (Decision("a", (0, 1, 2, 3)), Decision("b", ("x", "y", "z")), Decision("c", (True, False))))
PRETRAINED_TASKS = ["a", "b", "c"]
NEW_TASKS = ["b", "new"]  # "b" is known (pretrained index 1), "new" is not
PREFERRED = {"a": 0, "b": 1, "c": 2, "new": 3}  # each task rewards one choice of decision "a"
TASK_KEY = "task_embeddings.weight"


def _reward(trial) -> float:
    return 1.0 if trial.config["a"] == PREFERRED[trial.task] else 0.0


def _train(search, rounds: int, batch_size: int = 8) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for _ in range(rounds):
        trials = search.ask(batch_size)
        metrics = search.tell(trials, [_reward(t) for t in trials])
    return metrics


def _pretrain(method: str, rounds: int, **update_config):
    search = make_search(method, TOY, PRETRAINED_TASKS, "pre", seed=0, update_config=update_config)
    _train(search, rounds)
    return search


def _shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k != TASK_KEY}


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def pretrained(_one_torch_thread):
    """A REINFORCE search trained for 10 rounds: its weights are far from their initialization
    but its policy is not yet deterministic (a new task can still learn from it)."""
    return _pretrain("reinforce", rounds=10, learning_rate=0.02)


# -- weights ----------------------------------------------------------------------------------


def test_transfer_copies_shared_weights_and_known_embeddings_and_draws_new_ones(pretrained):
    body = pretrained.state_dict()
    before = {k: v.clone() for k, v in body["controller_state"].items()}
    old = pretrained.controller.state_dict()
    one = ControllerSearch.transfer_from(body, NEW_TASKS, "tx-1", seed=1)
    two = ControllerSearch.transfer_from(body, NEW_TASKS, "tx-2", seed=2)
    assert type(one).name == "reinforce" and one.tasks == NEW_TASKS
    # Pretraining moved the weights away from their initialization, so copying them shows.
    initial = make_search("reinforce", TOY, PRETRAINED_TASKS, "pre", seed=0).controller.state_dict()
    assert not torch.allclose(initial["heads.0.bias"], old["heads.0.bias"])

    for search in (one, two):
        new = search.controller.state_dict()
        _assert_same_tensors(_shared(new), _shared(old))
        embeddings = new[TASK_KEY]
        assert embeddings.shape == (2, search.controller.config.task_embedding_size)
        assert torch.equal(embeddings[0], old[TASK_KEY][1])  # "b" keeps its pretrained row
        fresh_row = embeddings[1]
        for row in old[TASK_KEY]:
            assert not torch.allclose(fresh_row, row)
        assert fresh_row.abs().max() <= 0.08  # U[-0.08, 0.08], the controller's init
        assert fresh_row.abs().max() > 0.0
    # The seed draws the new embedding; it does not touch anything transferred.
    assert not torch.allclose(one.controller.task_embeddings.weight[1], two.controller.task_embeddings.weight[1])
    again = ControllerSearch.transfer_from(body, NEW_TASKS, "tx-3", seed=1)
    assert torch.equal(again.controller.task_embeddings.weight, one.controller.task_embeddings.weight)
    # The checkpoint it came from is left as it was.
    _assert_same_tensors(body["controller_state"], before)


def test_transferred_policy_reproduces_known_tasks_and_restarts_the_search(pretrained):
    search = ControllerSearch.transfer_from(pretrained.state_dict(), NEW_TASKS, "tx", seed=3)
    old, new = pretrained.controller, search.controller
    for decision in range(len(TOY)):
        assert torch.equal(new.choice_probabilities(0, decision), old.choice_probabilities(1, decision))
        assert not torch.allclose(new.choice_probabilities(1, decision), old.choice_probabilities(1, decision))
    # Whole sequences too: log pi(m | "b") is the pretrained one for every configuration.
    actions = torch.cartesian_prod(*(torch.arange(n) for n in TOY.cardinalities))  # [24, 3]
    n = actions.shape[0]
    with torch.no_grad():
        new_b, _ = new.log_prob(actions, torch.zeros(n, dtype=torch.long))
        old_b, _ = old.log_prob(actions, torch.ones(n, dtype=torch.long))
    assert torch.allclose(new_b, old_b, atol=1e-6, rtol=0)

    assert pretrained.step == 10
    assert search.step == 0 and search.samples_seen == 0 and search.search_id == "tx"
    trials = search.ask(3)
    assert [t.trial_id for t in trials] == [f"tx/000000/{k:03d}" for k in range(3)]
    assert {t.task for t in trials} <= set(NEW_TASKS)
    search.tell(trials, [_reward(t) for t in trials])
    assert search.step == 1


# -- uniform mixing ---------------------------------------------------------------------------


def test_mixing_decays_linearly_with_samples_seen_and_floors_at_zero(pretrained):
    search = ControllerSearch.transfer_from(pretrained.state_dict(), NEW_TASKS, "tx", mixing_gamma=0.1,
                                            mixing_samples=100)
    expected = {0: 0.1, 25: 0.075, 50: 0.05, 100: 0.0, 150: 0.0}
    for seen, batch in ((0, 25), (25, 25), (50, 50), (100, 50), (150, None)):
        assert search.samples_seen == seen
        assert search.current_mixing() == pytest.approx(expected[seen], abs=1e-12)
        if batch is None:
            break
        trials = search.ask(batch)
        metrics = search.tell(trials, [_reward(t) for t in trials])
        assert metrics["controller/uniform_mixing"] == pytest.approx(search.current_mixing(), abs=1e-12)
    # The schedule is part of the search's state.
    resumed = ControllerSearch.from_checkpoint(search.state_dict())
    assert resumed.samples_seen == 150 and resumed.mixing_gamma == 0.1 and resumed.mixing_samples == 100

    no_mixing = ControllerSearch.transfer_from(pretrained.state_dict(), NEW_TASKS, "tx0", mixing_gamma=0.0)
    assert no_mixing.current_mixing() == 0.0
    no_mixing.ask(10)
    assert no_mixing.current_mixing() == 0.0 and no_mixing.samples_seen == 10
    assert make_search("reinforce", TOY, NEW_TASKS, "plain").current_mixing() == 0.0


@pytest.mark.parametrize("gamma", [-0.1, 1.5])
def test_mixing_gamma_outside_0_1_is_rejected(pretrained, gamma):
    with pytest.raises(ConfigError, match="mixing_gamma"):
        ControllerSearch.transfer_from(pretrained.state_dict(), NEW_TASKS, "tx", mixing_gamma=gamma)
    with pytest.raises(ConfigError, match="mixing_gamma"):
        make_search("reinforce", TOY, NEW_TASKS, "s", mixing_gamma=gamma)


def _peak_on_choice_zero(controller: LSTMController) -> None:
    with torch.no_grad():
        controller.heads[0].bias.zero_()
        controller.heads[0].bias[0] = 50.0  # P(a = 0) = 1 up to e^-50


def test_uniform_mix_samples_from_the_mixture_but_records_the_policy_log_probs():
    torch.manual_seed(0)
    controller = LSTMController(TOY.cardinalities, num_tasks=2)
    _peak_on_choice_zero(controller)
    n, cards = 4000, TOY.cardinalities[0]
    tasks = torch.arange(n) % 2

    pure = controller.sample(tasks, torch.Generator().manual_seed(0), uniform_mix=0.0)
    assert (pure.actions[:, 0] == 0).float().mean().item() == 1.0

    mixed = controller.sample(tasks, torch.Generator().manual_seed(0), uniform_mix=0.5)
    frequency = (mixed.actions[:, 0] == 0).float().mean().item()
    assert frequency == pytest.approx(0.5 + 0.5 / cards, abs=0.03)  # 0.625; sd of the estimate ~0.008
    log_probs, entropies = controller.log_prob(mixed.actions, tasks)
    assert torch.allclose(mixed.log_probs, log_probs, rtol=1e-5, atol=1e-4)
    assert torch.allclose(mixed.entropies, entropies, rtol=1e-5, atol=1e-4)
    # Under pi a choice other than 0 costs ~ -50; under the mixture it would cost ~ log(0.125).
    off_peak = mixed.actions[:, 0] != 0
    assert off_peak.sum() > 1000
    assert (mixed.log_probs[off_peak] < -40).all()


def test_transferred_search_samples_from_the_mixture_until_the_schedule_ends(pretrained):
    def peaked(gamma: float):
        search = ControllerSearch.transfer_from(pretrained.state_dict(), NEW_TASKS, "tx", mixing_gamma=gamma,
                                                mixing_samples=4000)
        _peak_on_choice_zero(search.controller)
        return search

    def frequency_of_zero(trials) -> float:
        return sum(t.actions[0] == 0 for t in trials) / len(trials)

    mixed = peaked(0.5)
    assert frequency_of_zero(mixed.ask(4000)) == pytest.approx(0.625, abs=0.03)  # gamma 0.5 at the start
    assert mixed.current_mixing() == 0.0
    assert frequency_of_zero(mixed.ask(1000)) == 1.0  # the schedule has run out
    assert frequency_of_zero(peaked(0.0).ask(1000)) == 1.0


# -- learning on the new task -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transferred_search_learns_the_new_task(pretrained, seed):
    # Measured: P(a = 3 | "new") starts near 0.18 and passes 0.8 after 15-25 rounds of 8 for
    # seeds 0-9 (learning rate 0.02, carried over from the checkpoint's update config).
    search = ControllerSearch.transfer_from(pretrained.state_dict(), NEW_TASKS, "tx", seed=seed)
    assert search.update_rule.config.learning_rate == 0.02
    start = search.controller.choice_probabilities(1, 0)[PREFERRED["new"]].item()
    assert start < 0.4
    p, updates = start, 0
    while p <= 0.8 and updates < 80:
        _train(search, 1)
        updates += 1
        p = search.controller.choice_probabilities(1, 0)[PREFERRED["new"]].item()
    assert p > 0.8, f"P(a = 3 | new) went from {start:.2f} to {p:.2f} in {updates} updates"


# -- update-rule state ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained_ppo(_one_torch_thread):
    search = _pretrain("ppo", rounds=4, update_every=8, gradient_steps=5)
    rule = search.update_rule
    assert rule.replay_len == 32 and rule.trainings == 4 and sum(rule.baselines.count) == 32
    return search


@pytest.mark.parametrize("tasks", [NEW_TASKS, PRETRAINED_TASKS])
def test_update_rule_starts_fresh_by_default(pretrained_ppo, tasks):
    search = ControllerSearch.transfer_from(pretrained_ppo.state_dict(), tasks, "tx")
    rule = search.update_rule
    assert type(search).name == "ppo" and rule.name == "ppo"
    assert rule.replay_len == 0 and rule.new_samples == 0
    assert rule.baselines.count == [0] * len(tasks) and rule.baselines.num_tasks == len(tasks)
    assert rule.updates == 0 and rule.trainings == 0
    assert rule.optimizer.state_dict()["state"] == {}
    # The update config travels with the checkpoint.
    assert rule.config.update_every == 8 and rule.config.gradient_steps == 5


def test_keep_update_state_carries_replay_bank_and_baselines_over(pretrained_ppo):
    old = pretrained_ppo.update_rule
    search = ControllerSearch.transfer_from(pretrained_ppo.state_dict(), PRETRAINED_TASKS, "tx",
                                            keep_update_state=True)
    rule = search.update_rule
    assert rule.replay_len == old.replay_len == 32
    for name in ("replay_tasks", "replay_actions", "replay_advantages", "replay_behaviour_log_probs"):
        assert torch.equal(getattr(rule, name), getattr(old, name)), name
    assert rule.baselines.state_dict() == old.baselines.state_dict()
    assert rule.updates == old.updates and rule.trainings == old.trainings
    _assert_same_tensors(rule.learner.state_dict(), old.learner.state_dict())
    assert rule.optimizer.state_dict()["state"].keys() == old.optimizer.state_dict()["state"].keys() != set()
    # The search itself still restarts.
    assert search.step == 0 and search.search_id == "tx"


@pytest.mark.parametrize("tasks", [NEW_TASKS, ["c", "b", "a"]])
def test_keep_update_state_needs_the_pretrained_task_list(pretrained_ppo, tasks):
    # The message names both task lists, the pretrained one first.
    named = re.escape(str(PRETRAINED_TASKS)) + ".*" + re.escape(str(tasks))
    with pytest.raises(ConfigError, match=named):
        ControllerSearch.transfer_from(pretrained_ppo.state_dict(), tasks, "tx", keep_update_state=True)


@pytest.mark.parametrize("method", ["reinforce", "ppo"])
def test_training_a_transferred_search_leaves_the_pretrained_search_alone(method):
    settings = {"learning_rate": 0.02} if method == "reinforce" else {"update_every": 8, "gradient_steps": 2}
    pre = _pretrain(method, rounds=2, **settings)
    snapshot = copy.deepcopy(pre.update_rule.optimizer.state_dict()["state"])
    search = ControllerSearch.transfer_from(pre.state_dict(), PRETRAINED_TASKS, "tx", keep_update_state=True)
    _train(search, 2)
    after = pre.update_rule.optimizer.state_dict()["state"]
    for index, state in snapshot.items():
        for key, value in state.items():
            assert torch.equal(after[index][key], value), (index, key)


# -- from a checkpoint on disk ----------------------------------------------------------------


@pytest.mark.parametrize(("method", "settings"), [
    ("reinforce", {"learning_rate": 0.02}),
    ("ppo", {"update_every": 8, "gradient_steps": 2}),
    ("pqt", {"learning_rate": 0.01}),
    ("transformer", {"learning_rate": 0.01}),
])
def test_transfer_from_a_checkpoint_file_equals_transfer_from_memory(tmp_path, method, settings):
    pre = _pretrain(method, rounds=2, **settings)
    path = tmp_path / "pretrained.ckpt"
    save_checkpoint(path, pre.state_dict())
    body = load_checkpoint(path, space=TOY, tasks=PRETRAINED_TASKS)
    from_disk = ControllerSearch.transfer_from(body, NEW_TASKS, "tx", seed=5)
    from_memory = ControllerSearch.transfer_from(pre.state_dict(), NEW_TASKS, "tx", seed=5)
    assert type(from_disk) is type(from_memory) and type(from_disk).name == method
    _assert_same_tensors(from_disk.controller.state_dict(), from_memory.controller.state_dict())
    _assert_same_tensors(_shared(from_disk.controller.state_dict()), _shared(pre.controller.state_dict()))
    assert torch.equal(from_disk.controller.task_embeddings.weight[0], pre.controller.task_embeddings.weight[1])
    trials = from_disk.ask(4)
    from_disk.tell(trials, [_reward(t) for t in trials])  # and it runs
    # keep_update_state works from disk too.
    kept = ControllerSearch.transfer_from(body, PRETRAINED_TASKS, "tx", keep_update_state=True)
    assert kept.update_rule.baselines.state_dict() == pre.update_rule.baselines.state_dict()


# -- transformer agent ------------------------------------------------------------------------


def test_transformer_search_transfers_its_agent():
    pre = _pretrain("transformer", rounds=5, learning_rate=0.01)
    old = pre.controller.state_dict()
    search = ControllerSearch.transfer_from(pre.state_dict(), NEW_TASKS, "tx", seed=4)
    assert type(search).name == "transformer" and search.controller.kind == "transformer"
    new = search.controller.state_dict()
    _assert_same_tensors(_shared(new), _shared(old))
    assert torch.equal(new[TASK_KEY][0], old[TASK_KEY][1])
    for row in old[TASK_KEY]:
        assert not torch.allclose(new[TASK_KEY][1], row)
    # "new" keeps the initialization a fresh search with this seed would give it.
    fresh = make_search("transformer", TOY, NEW_TASKS, "fresh", seed=4).controller.state_dict()
    assert torch.equal(new[TASK_KEY][1], fresh[TASK_KEY][1])
    assert not torch.equal(fresh["decisions.d_a.head.weight"], old["decisions.d_a.head.weight"])  # it trained
    for decision in range(len(TOY)):
        assert torch.allclose(search.controller.choice_probabilities(0, decision),
                              pre.controller.choice_probabilities(1, decision), atol=1e-6, rtol=0)
    assert not torch.allclose(search.controller.choice_probabilities(1, 0), pre.controller.choice_probabilities(1, 0))
    rule = search.update_rule
    assert rule.name == "pqt" and all(len(q) == 0 for q in rule.queues) and rule.baselines.count == [0, 0]
    assert search.step == 0 and search.current_mixing() == pytest.approx(0.1)

"""The interfaces are `typing.Protocol`s: every registered controller kind and update rule, and the
text, image and table child trainers, satisfy theirs (attributes present, and the methods take
the arguments the callers pass)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from transfer_automl.algorithms import UPDATE_RULES, UpdateRule, UpdateRuleConfig
from transfer_automl.children import ChildResult, ChildTrainer
from transfer_automl.controllers import CONTROLLERS, Controller, ControllerConfig, build_controller
from transfer_automl.search import SEARCHES, ControllerSearch, make_search
from transfer_automl.space import Decision, SearchSpace

SPACE = SearchSpace("interfaces", (Decision("width", (16, 32, 64)), Decision("act", ("relu", "tanh"))))
TASKS = ["a", "b"]


def accepts(method, *names: str) -> bool:
    parameters = inspect.signature(method).parameters
    return all(name in parameters for name in names)


@pytest.mark.parametrize("kind", sorted(CONTROLLERS))
def test_every_controller_kind_is_a_controller(kind):
    controller = build_controller(kind, SPACE, len(TASKS), {})
    assert isinstance(controller, Controller)
    assert controller.kind == kind and controller.num_tasks == len(TASKS)
    assert isinstance(controller.config, ControllerConfig) and isinstance(controller.config.to_dict(), dict)
    assert accepts(controller.sample, "tasks", "generator", "uniform_mix")
    assert accepts(controller.log_prob, "actions", "tasks")
    assert accepts(controller.load_transferred, "state", "old_tasks", "new_tasks")


@pytest.mark.parametrize("name", sorted(UPDATE_RULES))
def test_every_update_rule_is_an_update_rule(name):
    rule = UPDATE_RULES[name](build_controller("lstm", SPACE, len(TASKS), {}), {})
    assert isinstance(rule, UpdateRule)
    assert rule.name == name and isinstance(rule.config, rule.config_class)
    assert isinstance(rule.config, UpdateRuleConfig)
    assert accepts(rule.update, "controller", "rollout", "rewards")


@pytest.mark.parametrize("name", sorted(n for n in SEARCHES if issubclass(SEARCHES[n], ControllerSearch)))
def test_controller_searches_hold_a_controller_and_an_update_rule(name):
    search = make_search(name, SPACE, TASKS, "s")
    assert isinstance(search, ControllerSearch)
    assert isinstance(search.controller, Controller) and isinstance(search.update_rule, UpdateRule)
    assert search.controller.kind == search.controller_kind and search.update_rule.name == search.update_rule_name


def test_something_else_is_not_a_controller_an_update_rule_or_a_child_trainer():
    assert not isinstance(object(), Controller)
    assert not isinstance(object(), UpdateRule)
    assert not isinstance(object(), ChildTrainer)


def _assert_child_trainer(trainer) -> None:
    assert isinstance(trainer, ChildTrainer)
    assert accepts(trainer.train, "config", "task", "seed", "keep_model")


def test_text_and_image_child_trainers_are_child_trainers(tmp_path):
    from transfer_automl.children.images import ImageChildTrainer
    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.tasks.features import FeatureCache

    _assert_child_trainer(TextChildTrainer(ChildTrainerConfig(), FeatureCache(tmp_path / "text")))
    _assert_child_trainer(ImageChildTrainer(ChildTrainerConfig(), FeatureCache(tmp_path / "image")))


def test_the_table_child_trainer_is_a_child_trainer_and_takes_the_same_keywords():
    from transfer_automl.children.table import TableChildTrainer
    from transfer_automl.tasks.benchmarks import TableBenchmark

    bench = TableBenchmark("toy", SPACE, ["t"], row_actions=np.array([[0, 0], [2, 1]]),
                           metric={"t": np.array([0.25, 0.75])})
    trainer = TableChildTrainer(bench)
    _assert_child_trainer(trainer)
    result = trainer.train({"width": 64, "act": "tanh"}, "t", seed=3, keep_model=True)
    assert isinstance(result, ChildResult)
    assert result.status == "ok" and result.val_accuracy == 0.75 and result.model is None

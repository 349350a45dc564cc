"""The `UpdateRule` interface and the registry of update rules (CleanRL's ppo.py update, as an object).

An update rule is built from the controller it trains and its config,
`Rule(controller, config)` where config is the rule's `config_class` dataclass or a dict of its
fields, and owns what it learns besides the controller's weights (optimizer, baselines, replay
bank, priority queues): all of it in `state_dict()`, restored by `load_state_dict()`.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

from transfer_automl.controllers.base import Controller, Rollout
from transfer_automl.registry import Registry


@runtime_checkable
class UpdateRuleConfig(Protocol):
    """An update rule's frozen config dataclass; `to_dict()` is what a checkpoint keeps."""

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class UpdateRule(Protocol):
    """`update(controller, rollout, rewards) -> metrics`: one learning step from a round of rewards."""

    name: str  # the name it is registered under in UPDATE_RULES
    config_class: type  # its frozen config dataclass
    config: UpdateRuleConfig  # an instance of config_class

    def update(self, controller: Controller, rollout: Rollout, rewards: list[float]) -> dict[str, float]:
        """Learn from rewards[i] of rollout trial i; returns metrics named `controller/*`."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


UPDATE_RULES: Registry[type[UpdateRule]] = Registry("update rule")

R = TypeVar("R", bound=type)


def register_update_rule(cls: R) -> R:
    """Class decorator: make an update rule selectable by its `name`; names are unique."""
    UPDATE_RULES.register(cls.name, cls)
    return cls

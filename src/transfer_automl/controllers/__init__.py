"""Policies that sample one action per decision of a search space, conditioned on a task.

Every controller satisfies the `Controller` protocol (controllers/base.py): an nn.Module with
`kind`, `config.to_dict()`, `num_tasks`, `sample(tasks, generator, uniform_mix) -> Rollout`,
`log_prob(actions, tasks)` and `load_transferred(state, old_tasks, new_tasks)`. `CONTROLLERS`
maps kinds to builders (`CONTROLLERS.register(kind, builder)` adds one); importing this package
registers "lstm" and "transformer".
"""

from __future__ import annotations

from typing import Any

from transfer_automl.controllers.base import (
    CONTROLLERS,
    Controller,
    ControllerBuilder,
    ControllerConfig,
    Rollout,
)
from transfer_automl.controllers.lstm import LSTMController, LSTMControllerConfig
from transfer_automl.controllers.transformer import (
    TransformerController,
    TransformerControllerConfig,
)
from transfer_automl.errors import ConfigError
from transfer_automl.space import SearchSpace


def build_controller(kind: str, space: SearchSpace, num_tasks: int, config: dict[str, Any]) -> Controller:
    """A new controller of a registered kind; ConfigError for an unknown kind or a bad config."""
    builder = CONTROLLERS.get(kind)
    try:
        return builder(space, num_tasks, config)
    except TypeError as exc:
        raise ConfigError(f"controller {kind!r}: bad config {config}: {exc}") from None


__all__ = [
    "CONTROLLERS", "Controller", "ControllerBuilder", "ControllerConfig", "LSTMController", "LSTMControllerConfig",
    "Rollout", "TransformerController", "TransformerControllerConfig", "build_controller",
]

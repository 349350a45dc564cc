"""Policies that sample one action per decision of a search space, conditioned on a task.

Every controller is an nn.Module with `kind`, `config.to_dict()`, `num_tasks`,
`sample(tasks, generator, uniform_mix) -> Rollout`, `log_prob(actions, tasks)` and
`load_transferred(state, old_tasks, new_tasks)`; `CONTROLLERS` maps kinds to builders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from transfer_automl.controllers.lstm import LSTMController, LSTMControllerConfig, Rollout
from transfer_automl.errors import ConfigError, SearchSpaceError
from transfer_automl.space import SearchSpace


def _build_lstm(space: SearchSpace, num_tasks: int, config: dict[str, Any]) -> nn.Module:
    if any(getattr(d, "condition", None) for d in space.decisions):
        raise SearchSpaceError(f"the LSTM controller needs an unconditional space; {space.name!r} has conditions")
    return LSTMController(space.cardinalities, num_tasks, LSTMControllerConfig(**config))


CONTROLLERS: dict[str, Callable[[SearchSpace, int, dict[str, Any]], nn.Module]] = {"lstm": _build_lstm}


def register_controller(kind: str, builder: Callable[[SearchSpace, int, dict[str, Any]], nn.Module]) -> None:
    if kind in CONTROLLERS:
        raise ValueError(f"controller kind {kind!r} is already registered")
    CONTROLLERS[kind] = builder


def build_controller(kind: str, space: SearchSpace, num_tasks: int, config: dict[str, Any]) -> nn.Module:
    if kind not in CONTROLLERS:
        raise ConfigError(f"unknown controller kind {kind!r}; available: {sorted(CONTROLLERS)}")
    try:
        return CONTROLLERS[kind](space, num_tasks, config)
    except TypeError as exc:
        raise ConfigError(f"controller {kind!r}: bad config {config}: {exc}") from None


# Registers "transformer"; after register_controller is defined (the module imports it).
from transfer_automl.controllers import transformer  # noqa: E402,F401  isort: skip

__all__ = ["CONTROLLERS", "LSTMController", "LSTMControllerConfig", "Rollout", "build_controller", "register_controller"]

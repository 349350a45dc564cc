"""The `Controller` interface, the `Rollout` it samples, and the registry of controller kinds.

A controller is a policy over the decisions of a search space, conditioned on a task (CleanRL's
`Agent.get_action_and_value`): `sample` draws one configuration per task index, `log_prob`
re-scores given configurations with gradients for an update rule. Every controller is also an
`nn.Module` (the update rules optimize its `parameters()`, checkpoints keep its `state_dict()`).

`CONTROLLERS` maps a kind ("lstm", "transformer") to a builder
`(space, num_tasks, config dict) -> Controller`; `controllers.build_controller` calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from transfer_automl.registry import Registry
from transfer_automl.space import SearchSpace


@dataclass
class Rollout:
    """A batch of sampled configurations, as choice indices."""

    tasks: Tensor  # [n] long, task index per trial
    actions: Tensor  # [n, D] long, one choice index per decision (-1: an inactive decision)
    log_probs: Tensor  # [n] log pi(actions | task), detached
    entropies: Tensor  # [n] summed per-step entropy of the policy, detached


@runtime_checkable
class ControllerConfig(Protocol):
    """A controller's frozen config dataclass; `to_dict()` is what a checkpoint keeps."""

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Controller(Protocol):
    """What searches and update rules use of a controller (the LSTM and the transformer agent)."""

    kind: str  # the name it is registered under in CONTROLLERS
    config: ControllerConfig
    num_tasks: int

    def sample(self, tasks: Tensor, generator: torch.Generator | None = None, uniform_mix: float = 0.0) -> Rollout:
        """One configuration per entry of `tasks` ([n] long); with uniform_mix = gamma > 0 each
        action is drawn from (1 - gamma) * pi + gamma * uniform. No gradients."""
        ...

    def log_prob(self, actions: Tensor, tasks: Tensor) -> tuple[Tensor, Tensor]:
        """log pi(actions | task) and the policy entropy, summed over decisions: ([n], [n]), with gradients."""
        ...

    def load_transferred(self, state: dict[str, Tensor], old_tasks: list[str], new_tasks: list[str]) -> None:
        """Load a pretrained controller's weights; task embeddings follow the task names."""
        ...

    # The nn.Module methods the update rules and checkpoints rely on.
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any: ...


ControllerBuilder = Callable[[SearchSpace, int, dict[str, Any]], Controller]

CONTROLLERS: Registry[ControllerBuilder] = Registry("controller kind")

"""Random search: every decision drawn uniformly at random, independently of all results.

The single-task baseline every other method must beat. Like the other baselines it keeps its
state per task (here only a count of the trials told), and the base class draws the task of each
trial uniformly. All randomness comes from `self.generator`, whose state is in `state_dict()`,
so a reloaded search proposes exactly what the original would have.

The helpers below are shared by the other single-task baselines (evolution, TPE).
"""

from __future__ import annotations

from typing import Any

import torch

from transfer_automl.errors import CheckpointError
from transfer_automl.search.base import Search, Trial, register_search
from transfer_automl.space import SearchSpace


def uniform_actions(cardinalities: list[int], n: int, generator: torch.Generator) -> list[list[int]]:
    """n configurations, each decision i uniform over range(cardinalities[i])."""
    if n == 0:
        return []
    columns = [torch.randint(c, (n,), generator=generator) for c in cardinalities]  # each (n,)
    return torch.stack(columns, dim=1).tolist()  # (n, num_decisions)


def check_state_header(search: Search, state: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
    """A state dict must come from the same method, task list and search space (and settings)."""
    if state.get("name") != search.name:
        raise CheckpointError(f"state is for search method {state.get('name')!r}, not {search.name!r}")
    if list(state.get("tasks", [])) != search.tasks:
        raise CheckpointError(f"state is for tasks {state.get('tasks')}, not {search.tasks}")
    if state.get("space_fingerprint") != search.space.fingerprint():
        raise CheckpointError(
            f"state is for search space fingerprint {state.get('space_fingerprint')!r}, "
            f"not {search.space.fingerprint()} ({search.space.name})"
        )
    if settings is not None and dict(state.get("settings", {})) != settings:
        raise CheckpointError(f"state was saved with settings {dict(state.get('settings', {}))}, this search has {settings}")


@register_search("rs")
class RandomSearch(Search):
    """Uniform random search; `_learn` only counts the trials told per task."""

    def __init__(self, space: SearchSpace, tasks: list[str], search_id: str, seed: int = 0):
        super().__init__(space, tasks, search_id, seed)
        self.told = [0] * len(self.tasks)  # trials told, per task

    def _propose(self, task_indices: list[int]) -> list[list[int]]:
        return uniform_actions(self.space.cardinalities, len(task_indices), self.generator)

    def _learn(self, trials: list[Trial], rewards: list[float]) -> dict[str, float]:
        for trial in trials:
            self.told[trial.task_index] += 1
        return {f"controller/told/{task}": float(n) for task, n in zip(self.tasks, self.told, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "told": list(self.told)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_header(self, state)
        super().load_state_dict(state)
        self.told = [int(n) for n in state["told"]]

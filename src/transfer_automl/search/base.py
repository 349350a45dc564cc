"""The ask/tell `Search` interface every search method implements, and its registry.

A search proposes trials for a fixed list of tasks and learns from their rewards:

    search = make_search("reinforce", space, tasks=["a", "b"], search_id="s", seed=0)
    trials = search.ask(4)                  # each trial: a task and one configuration
    search.tell(trials, rewards)            # rewards[i] belongs to trials[i]
    state = search.state_dict()             # plain data + tensors: torch.load(weights_only=True)
    search.load_state_dict(state)

Methods that are single-task by nature (random search, evolution, TPE) keep one state per task
and pick the task of each trial uniformly, like the multitask controller, so every method runs in
the same harness. Trial ids are deterministic ("<search_id>/<step>/<k>"), so a retried round
reuses them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from transfer_automl.errors import ConfigError
from transfer_automl.space import SearchSpace


@dataclass
class Trial:
    trial_id: str  # "<search_id>/<step>/<k>"
    index: int  # k, the trial's position in its round
    task: str
    task_index: int
    controller_step: int  # the search's step when the trial was asked
    actions: list[int]  # one choice index per decision
    config: dict[str, Any]  # {decision: value}


class Search(ABC):
    """Base class. Subclasses implement `_propose` and `_learn`; the bookkeeping is shared."""

    name: str = ""

    def __init__(self, space: SearchSpace, tasks: list[str], search_id: str, seed: int = 0):
        if not tasks:
            raise ConfigError("a search needs at least one task")
        self.space = space
        self.tasks = list(tasks)
        self.search_id = search_id
        self.seed = seed
        self.step = 0
        self.generator = torch.Generator().manual_seed(seed)

    def ask(self, n: int) -> list[Trial]:
        """n trials, a task drawn uniformly for each."""
        task_idx = torch.randint(len(self.tasks), (n,), generator=self.generator).tolist()
        actions = self._propose(task_idx)
        return [
            Trial(
                trial_id=f"{self.search_id}/{self.step:06d}/{k:03d}", index=k, task=self.tasks[t], task_index=t,
                controller_step=self.step, actions=list(a), config=self.space.decode(a),
            )
            for k, (t, a) in enumerate(zip(task_idx, actions, strict=True))
        ]

    def tell(self, trials: list[Trial], rewards: list[float]) -> dict[str, float]:
        if len(trials) != len(rewards):
            raise ValueError(f"tell got {len(trials)} trials but {len(rewards)} rewards")
        metrics = self._learn(trials, [float(r) for r in rewards])
        self.step += 1
        return metrics

    @abstractmethod
    def _propose(self, task_indices: list[int]) -> list[list[int]]:
        """One action list (a choice index per decision) per requested task index."""

    @abstractmethod
    def _learn(self, trials: list[Trial], rewards: list[float]) -> dict[str, float]:
        """Update on one round of results; returns metrics such as controller/loss."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue, self-describing: subclasses extend with their own state."""
        return {
            "name": self.name, "step": self.step, "generator_state": self.generator.get_state(),
            "search_id": self.search_id, "tasks": list(self.tasks),
            "space": self.space.to_dict(), "space_fingerprint": self.space.fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.generator.set_state(state["generator_state"])


SEARCHES: dict[str, Callable[..., Search]] = {}


def register_search(name: str):
    """Class decorator: make a Search selectable by `name`; names are unique."""

    def wrap(cls):
        if name in SEARCHES:
            raise ValueError(f"search method {name!r} is already registered")
        cls.name = name
        SEARCHES[name] = cls
        return cls

    return wrap


def make_search(name: str, space: SearchSpace, tasks: list[str], search_id: str, seed: int = 0, **settings) -> Search:
    if name not in SEARCHES:
        raise ConfigError(f"unknown search method {name!r}; available: {sorted(SEARCHES)}")
    return SEARCHES[name](space, tasks, search_id, seed=seed, **settings)

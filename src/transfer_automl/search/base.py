"""The ask/tell `Search` interface every search method implements, and its registry `SEARCHES`.

A search proposes trials for a fixed list of tasks and learns from their rewards:

    search = make_search("reinforce", space, tasks=["a", "b"], search_id="s", seed=0)
    trials = search.ask(4)                  # each trial: a task and one configuration
    search.tell(trials, rewards)            # rewards[i] belongs to trials[i]
    state = search.state_dict()             # plain data + tensors: torch.load(weights_only=True)
    search.load_state_dict(state)

Methods that are single-task by nature (random search, evolution, TPE) keep one state per task
and pick the task of each trial uniformly, like the multitask controller, so every method runs in
the same harness. Trial ids are deterministic ("<search_id>/<step>/<k>"), so a retried round
reuses them. `tell` checks a round for every method before any state changes (`check_results`);
tests/unit/test_search_interface.py runs one interface suite against every registered method.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from transfer_automl.errors import ConfigError
from transfer_automl.registry import Registry
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
    # Multi-fidelity search (search/fidelity.py): a promotion continues its parent's child for a
    # larger budget. A search's own trials are rung 0 with no parent; only those are told to it.
    rung: int = 0
    budget: float | None = None  # fraction of the child's training budget; None: all of it
    parent_trial_id: str | None = None


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
        """Learn from one round: rewards[i] is the reward of trials[i]. A round that `check_results`
        refuses changes nothing (step, weights, generator state)."""
        checked = self.check_results(trials, rewards)
        metrics = self._learn(list(trials), checked)
        self.step += 1
        return metrics

    def check_results(self, trials: list[Trial], rewards: list[Any]) -> list[float]:
        """Refuse a round before any state changes, naming the trial and the value: a reward count
        that is not the trial count, a reward that is not a finite real number (NaN, inf, a bool,
        a string), a trial of another task list, a configuration outside the space. Returns the
        rewards as floats."""
        trials, rewards = list(trials), list(rewards)
        if len(trials) != len(rewards):
            raise ConfigError(f"tell got {len(trials)} trials but {len(rewards)} rewards")
        checked = []
        for trial, reward in zip(trials, rewards, strict=True):
            if isinstance(reward, bool) or not isinstance(reward, numbers.Real) or not math.isfinite(reward):
                raise ConfigError(f"trial {trial.trial_id}: reward {reward!r} ({type(reward).__name__}) "
                                  "is not a finite number")
            if not 0 <= trial.task_index < len(self.tasks) or self.tasks[trial.task_index] != trial.task:
                raise ConfigError(f"trial {trial.trial_id}: task {trial.task!r} at index {trial.task_index} "
                                  f"is not one of this search's tasks {self.tasks}")
            self.space.decode(trial.actions)  # raises SearchSpaceError naming the decision
            checked.append(float(reward))
        return checked

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


S = TypeVar("S", bound=Search)


SEARCHES: Registry[type[Search]] = Registry("search method")


def register_search(name: str) -> Callable[[type[S]], type[S]]:
    """Class decorator: make a Search selectable by `name` (also its `name`); names are unique."""

    def wrap(cls: type[S]) -> type[S]:
        SEARCHES.register(name, cls)
        cls.name = name
        return cls

    return wrap


def make_search(name: str, space: SearchSpace, tasks: list[str], search_id: str, seed: int = 0,
                **settings: Any) -> Search:
    """A new search of the registered method `name`; ConfigError naming the methods if unknown."""
    return SEARCHES.get(name)(space, tasks, search_id, seed=seed, **settings)

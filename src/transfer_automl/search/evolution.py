"""Regularized (aging) evolution, one population per task (Real et al. 2019, Algorithm 1).

Per task t, with population P_t (a FIFO queue of (configuration, reward)):

    propose:  if |P_t| < population_size:  a uniformly random configuration
              else:  sample  <- sample_size members of P_t drawn uniformly WITHOUT replacement
                     parent  <- the member of sample with the highest reward
                     child   <- parent with one decision, chosen uniformly among the decisions that
                                have more than one choice, changed to a different choice chosen
                                uniformly (the NAS-Bench-101 edge/op mutation)
    learn:    append (configuration, reward) to P_t; while |P_t| > population_size: drop the oldest

Aging removes the oldest member, not the worst, so a good configuration must keep being
rediscovered. Two choices differ from the paper's reference code (NAS-Bench-101 colab), which
draws the sample with replacement: here the sample holds distinct members, so
`sample_size == population_size` is a greedy tournament (always the best member); for
sample_size << population_size the two barely differ. Ties go to the member drawn first.

Whether a proposal is random or a mutation depends on the members *told* so far: `ask(n)` with
n > 1 proposes n independent configurations from the same population, and a round of initial
random trials can overshoot population_size (the extras simply age out first).
All randomness comes from `self.generator`, saved in `state_dict()` with the populations.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

from transfer_automl.errors import ConfigError
from transfer_automl.search.base import Search, Trial, register_search
from transfer_automl.search.random_search import check_state_header, uniform_actions
from transfer_automl.space import SearchSpace


@register_search("re")
class RegularizedEvolution(Search):
    def __init__(self, space: SearchSpace, tasks: list[str], search_id: str, seed: int = 0,
                 population_size: int = 100, sample_size: int = 8):
        super().__init__(space, tasks, search_id, seed)
        for field, value in (("population_size", population_size), ("sample_size", sample_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{field} must be an integer >= 1, got {value!r}")
        if sample_size > population_size:
            raise ConfigError(f"sample_size ({sample_size}) must be <= population_size ({population_size})")
        self.population_size = population_size
        self.sample_size = sample_size
        # One FIFO per task, oldest first: (actions, reward).
        self.populations: list[deque[tuple[list[int], float]]] = [deque() for _ in self.tasks]

    # -- proposing ----------------------------------------------------------------------------

    def _propose(self, task_indices: list[int]) -> list[list[int]]:
        proposals = []
        for t in task_indices:
            population = self.populations[t]
            if len(population) < self.population_size:
                proposals.append(uniform_actions(self.space.cardinalities, 1, self.generator)[0])
            else:
                proposals.append(self.mutate(self.tournament(population)))
        return proposals

    def tournament(self, population: deque[tuple[list[int], float]]) -> list[int]:
        """The best of `sample_size` distinct members drawn uniformly; ties go to the first drawn."""
        drawn = torch.randperm(len(population), generator=self.generator)[: self.sample_size].tolist()
        best = max(drawn, key=lambda i: population[i][1])  # max keeps the first of equal rewards
        return population[best][0]

    def mutate(self, parent: list[int]) -> list[int]:
        """Change one decision (uniform among those with >= 2 choices) to a different choice
        (uniform among the other choices). A space with no such decision returns the parent."""
        cardinalities = self.space.cardinalities
        mutable = [i for i, c in enumerate(cardinalities) if c > 1]
        child = list(parent)
        if not mutable:
            return child
        d = mutable[int(torch.randint(len(mutable), (1,), generator=self.generator))]
        shift = 1 + int(torch.randint(cardinalities[d] - 1, (1,), generator=self.generator))  # 1..c-1
        child[d] = (child[d] + shift) % cardinalities[d]
        return child

    # -- learning -----------------------------------------------------------------------------

    def _learn(self, trials: list[Trial], rewards: list[float]) -> dict[str, float]:
        for trial, reward in zip(trials, rewards, strict=True):
            population = self.populations[trial.task_index]
            population.append(([int(a) for a in trial.actions], reward))
            while len(population) > self.population_size:
                population.popleft()  # aging: the oldest dies, whatever its reward
        return {f"controller/population/{task}": float(len(p))
                for task, p in zip(self.tasks, self.populations, strict=True)}

    # -- state --------------------------------------------------------------------------------

    def settings(self) -> dict[str, int]:
        return {"population_size": self.population_size, "sample_size": self.sample_size}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(), "settings": self.settings(),
            # Per task, oldest first.
            "populations": [{"actions": [list(a) for a, _ in p], "rewards": [r for _, r in p]}
                            for p in self.populations],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_header(self, state, self.settings())
        super().load_state_dict(state)
        self.populations = [
            deque(([int(a) for a in actions], float(r))
                  for actions, r in zip(p["actions"], p["rewards"], strict=True))
            for p in state["populations"]
        ]

"""Controller-based searches: a task-conditioned policy proposes, an update rule learns.

`ask(n)` picks a task uniformly for each trial and samples a configuration from the controller
conditioned on that task; `tell` hands the rewards to the update rule (REINFORCE, PPO, PQT),
which normalizes them per task. A search started with `transfer_from` reuses a pretrained
controller: its weights and the embeddings of tasks it knows; new tasks get fresh, randomly
initialized embeddings, and for the first `mixing_samples` trials the policy is mixed with the
uniform distribution, gamma decaying linearly from `mixing_gamma` to 0 (Transfer NAS).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from transfer_automl.algorithms import UPDATE_RULES, UpdateRule
from transfer_automl.controllers import CONTROLLERS, Controller, Rollout, build_controller
from transfer_automl.errors import CheckpointError, ConfigError
from transfer_automl.search.base import SEARCHES, Search, Trial, register_search
from transfer_automl.space import SearchSpace, space_from_dict


class ControllerSearch(Search):
    """A `Controller` (registered kind `controller_kind`) trained by an `UpdateRule`
    (`update_rule_name`); `register_controller_search` makes a method of one such pair."""

    controller_kind: str = "lstm"
    update_rule_name: str = "reinforce"

    def __init__(self, space: SearchSpace, tasks: list[str], search_id: str, seed: int = 0,
                 controller_config: dict[str, Any] | None = None, update_config: dict[str, Any] | None = None,
                 mixing_gamma: float = 0.0, mixing_samples: int = 100):
        super().__init__(space, tasks, search_id, seed)
        if mixing_gamma < 0 or mixing_gamma > 1:
            raise ConfigError(f"mixing_gamma must be in [0, 1], got {mixing_gamma}")
        with torch.random.fork_rng():  # seed the initialisation without touching the global RNG
            torch.manual_seed(seed)
            self.controller: Controller = build_controller(self.controller_kind, space, len(self.tasks),
                                                           controller_config or {})
        self.update_rule: UpdateRule = UPDATE_RULES.get(self.update_rule_name)(self.controller, update_config or {})
        self.mixing_gamma = mixing_gamma
        self.mixing_samples = mixing_samples
        self.samples_seen = 0
        # The task embeddings before the first update [num_tasks, E] (random, or transferred): a
        # report measures how far learning moved them. Taken at step 0, so after a warm start.
        self.initial_task_embeddings: torch.Tensor | None = None

    def current_mixing(self) -> float:
        """gamma_t = gamma_0 * (1 - t / mixing_samples), floored at 0."""
        if self.mixing_gamma == 0 or self.mixing_samples <= 0:
            return 0.0
        return self.mixing_gamma * max(0.0, 1.0 - self.samples_seen / self.mixing_samples)

    def _propose(self, task_indices: list[int]) -> list[list[int]]:
        rollout = self.controller.sample(torch.tensor(task_indices), self.generator, uniform_mix=self.current_mixing())
        self.samples_seen += len(task_indices)
        return rollout.actions.tolist()

    def _keep_initial_embeddings(self) -> None:
        """Record the task embeddings as they are before any update (once, at step 0)."""
        if self.initial_task_embeddings is not None or self.step != 0:
            return
        table = task_embedding_table(self.controller.state_dict())
        if table is not None:
            self.initial_task_embeddings = table.detach().clone()

    def _learn(self, trials: list[Trial], rewards: list[float]) -> dict[str, float]:
        self._keep_initial_embeddings()
        rollout = Rollout(
            tasks=torch.tensor([t.task_index for t in trials]),
            actions=torch.tensor([t.actions for t in trials]),
            log_probs=torch.empty(0), entropies=torch.empty(0),
        )
        metrics = self.update_rule.update(self.controller, rollout, rewards)
        metrics["controller/uniform_mixing"] = self.current_mixing()
        return metrics

    # -- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        self._keep_initial_embeddings()
        initial = {} if self.initial_task_embeddings is None else \
            {"initial_task_embeddings": self.initial_task_embeddings.clone()}
        return {
            **super().state_dict(), **initial,
            "controller_kind": self.controller.kind,
            "controller_config": self.controller.config.to_dict(),
            "update_rule": self.update_rule.name,
            "update_config": self.update_rule.config.to_dict(),
            "controller_state": self.controller.state_dict(),
            "update_state": self.update_rule.state_dict(),
            "mixing": {"gamma": self.mixing_gamma, "samples": self.mixing_samples, "seen": self.samples_seen},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.controller.load_state_dict(state["controller_state"])
        # A deep copy: torch's optimizer.load_state_dict keeps the given tensors, so a search
        # restored from an in-memory body would otherwise train that body's optimizer state.
        self.update_rule.load_state_dict(copy.deepcopy(state["update_state"]))
        mixing = state.get("mixing", {})
        self.mixing_gamma = float(mixing.get("gamma", 0.0))
        self.mixing_samples = int(mixing.get("samples", 100))
        self.samples_seen = int(mixing.get("seen", 0))
        initial = state.get("initial_task_embeddings")  # absent in checkpoints written before it was kept
        self.initial_task_embeddings = initial.detach().clone() if isinstance(initial, torch.Tensor) else None

    @classmethod
    def from_checkpoint(cls, body: dict[str, Any]) -> ControllerSearch:
        missing = [k for k in _CONTROLLER_KEYS if k not in body]
        if missing:
            raise CheckpointError(f"checkpoint of a controller search lacks {missing}")
        search_cls = _search_class(body)
        search = search_cls(
            space_from_dict(body["space"], source="checkpoint"), list(body["tasks"]), str(body["search_id"]),
            controller_config=dict(body["controller_config"]), update_config=dict(body["update_config"]),
        )
        search.load_state_dict(body)
        return search

    @classmethod
    def initial_embeddings_from_seed(cls, body: dict[str, Any], seed: int) -> torch.Tensor | None:
        """The task embeddings a scratch search of this checkpoint's shape started from with `seed`
        (the construction is seeded), for checkpoints written before `initial_task_embeddings`
        was kept. Only right for a search that started from scratch with that seed."""
        search = _search_class(body)(space_from_dict(body["space"], source="checkpoint"), list(body["tasks"]),
                                     str(body["search_id"]), seed=seed,
                                     controller_config=dict(body["controller_config"]),
                                     update_config=dict(body["update_config"]))
        table = task_embedding_table(search.controller.state_dict())
        return None if table is None else table.detach().clone()

    @classmethod
    def transfer_from(cls, body: dict[str, Any], tasks: list[str], search_id: str, seed: int = 0,
                      keep_update_state: bool = False, mixing_gamma: float = 0.1, mixing_samples: int = 100,
                      update_config: dict[str, Any] | None = None) -> ControllerSearch:
        """A new search for `tasks` initialized from a pretrained controller checkpoint.

        Shared weights are copied; a task the checkpoint knows keeps its learned embedding, a new
        task gets a fresh random one. The update rule starts fresh (new optimizer, baselines and
        replay bank) unless `keep_update_state`, which needs the same task list.
        """
        search_cls = _search_class(body)
        space = space_from_dict(body["space"], source="checkpoint")
        search = search_cls(space, tasks, search_id, seed=seed, controller_config=dict(body["controller_config"]),
                            update_config=update_config or dict(body["update_config"]),
                            mixing_gamma=mixing_gamma, mixing_samples=mixing_samples)
        old_tasks = list(body["tasks"])
        search.controller.load_transferred(body["controller_state"], old_tasks, tasks)
        if keep_update_state:
            if old_tasks != list(tasks):
                raise ConfigError(f"keep_update_state needs the pretrained tasks {old_tasks}, got {list(tasks)}")
            search.update_rule.load_state_dict(copy.deepcopy(body["update_state"]))
        return search


def task_embedding_table(state: dict[str, Any]) -> torch.Tensor | None:
    """A controller state's task-embedding weight [num_tasks, E] (the one '*task_embeddings.weight'
    parameter), None if it has none or several."""
    keys = [k for k in state if k.endswith("task_embeddings.weight")]
    return state[keys[0]] if len(keys) == 1 else None


_CONTROLLER_KEYS = ("controller_kind", "controller_config", "controller_state", "update_rule", "update_config",
                    "update_state")


def _search_class(body: dict[str, Any]) -> type[ControllerSearch]:
    kind, rule = body.get("controller_kind"), body.get("update_rule")
    if kind not in CONTROLLERS:
        raise CheckpointError(f"checkpoint controller kind {kind!r} is not one of {sorted(CONTROLLERS)}")
    for candidate in SEARCHES.values():
        if (issubclass(candidate, ControllerSearch) and candidate.controller_kind == kind
                and candidate.update_rule_name == rule):
            return candidate
    raise CheckpointError(f"no search method uses controller {kind!r} with update rule {rule!r}")


def register_controller_search(name: str, controller_kind: str, update_rule: str) -> type[ControllerSearch]:
    """Register a search method that pairs a controller kind with an update rule."""
    cls = type(f"{name.title().replace('-', '')}Search", (ControllerSearch,),
               {"controller_kind": controller_kind, "update_rule_name": update_rule, "__module__": __name__})
    return register_search(name)(cls)


ReinforceSearch = register_controller_search("reinforce", "lstm", "reinforce")

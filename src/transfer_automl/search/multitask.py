"""Multitask controller search behind an ask/tell interface.

`ask(n)` picks a task uniformly at random for each of n trials and samples one configuration per
trial from the task-conditioned controller; `tell(trials, rewards)` applies one policy update
with per-task normalized advantages. All state (weights, optimizer, baselines, generator, step)
goes into and comes back from a checkpoint payload, so a search can stop and continue anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from transfer_automl.algorithms import Reinforce, ReinforceConfig
from transfer_automl.controllers import LSTMController, LSTMControllerConfig, Rollout
from transfer_automl.errors import CheckpointError
from transfer_automl.space import SearchSpace, space_from_dict


@dataclass
class Trial:
    trial_id: str  # "<search_id>/<step>/<k>": deterministic, so a retried round reuses it
    index: int  # k, the trial's position in its round
    task: str
    task_index: int
    controller_step: int
    actions: list[int]
    config: dict[str, Any]


class MultitaskSearch:
    def __init__(self, space: SearchSpace, tasks: list[str], search_id: str, seed: int = 0,
                 controller_config: LSTMControllerConfig | None = None,
                 update_config: ReinforceConfig | None = None):
        self.space = space
        self.tasks = list(tasks)
        self.search_id = search_id
        self.step = 0
        with torch.random.fork_rng():  # seed the initialisation without touching the global RNG
            torch.manual_seed(seed)
            self.controller = LSTMController(space.cardinalities, len(self.tasks), controller_config)
        self.update_rule = Reinforce(self.controller, update_config)
        self.generator = torch.Generator().manual_seed(seed)

    def ask(self, n: int) -> list[Trial]:
        task_idx = torch.randint(len(self.tasks), (n,), generator=self.generator)  # uniform per trial
        rollout = self.controller.sample(task_idx, self.generator)
        trials = []
        for k in range(n):
            actions = rollout.actions[k].tolist()
            t = int(task_idx[k])
            trials.append(Trial(
                trial_id=f"{self.search_id}/{self.step:06d}/{k:03d}", index=k, task=self.tasks[t], task_index=t,
                controller_step=self.step, actions=actions, config=self.space.decode(actions),
            ))
        return trials

    def tell(self, trials: list[Trial], rewards: list[float]) -> dict[str, float]:
        rollout = Rollout(
            tasks=torch.tensor([t.task_index for t in trials]),
            actions=torch.tensor([t.actions for t in trials]),
            log_probs=torch.empty(0), entropies=torch.empty(0),
        )
        metrics = self.update_rule.update(self.controller, rollout, rewards)
        self.step += 1
        return metrics

    # -- state --------------------------------------------------------------------------------

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "controller_kind": self.controller.kind,
            "controller_config": self.controller.config.to_dict(),
            "update_rule": self.update_rule.name,
            "update_config": self.update_rule.config.to_dict(),
            "space": self.space.to_dict(),
            "space_fingerprint": self.space.fingerprint(),
            "tasks": list(self.tasks),
            "controller_state": self.controller.state_dict(),
            "update_state": self.update_rule.state_dict(),
            "step": self.step,
            "search_id": self.search_id,
            "generator_state": self.generator.get_state(),
        }

    @classmethod
    def from_checkpoint(cls, body: dict[str, Any]) -> MultitaskSearch:
        if body["controller_kind"] != LSTMController.kind:
            raise CheckpointError(f"checkpoint controller kind {body['controller_kind']!r} is not supported")
        search = cls(
            space_from_dict(body["space"], source="checkpoint"), list(body["tasks"]), str(body["search_id"]),
            controller_config=LSTMControllerConfig(**body["controller_config"]),
            update_config=ReinforceConfig(**body["update_config"]),
        )
        search.controller.load_state_dict(body["controller_state"])
        search.update_rule.load_state_dict(body["update_state"])
        search.generator.set_state(body["generator_state"])
        search.step = int(body["step"])
        return search

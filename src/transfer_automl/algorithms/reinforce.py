"""REINFORCE with per-task normalized advantages (Transfer AutoML, section 2.2).

    loss = - mean_i [ A'_{tau_i}(m_i) * log pi_theta(m_i | tau_i) ]  -  beta * mean_i H(pi(. | tau_i))

with A' from `TaskBaselines` and beta the (optional) entropy bonus. The paper updates after every
child (batch size 1) with learning rate 1e-4; both are settings of the search.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from transfer_automl.algorithms.base import register_update_rule
from transfer_automl.algorithms.baselines import TaskBaselines
from transfer_automl.controllers.base import Controller, Rollout


@dataclass(frozen=True)
class ReinforceConfig:
    learning_rate: float = 1e-4  # Adam step size for the controller
    normalization: str = "std"  # "std" (T-AML) or "baseline" (MNMS)
    baseline_decay: float = 0.95  # EMA decay of the per-task baseline and std
    min_std: float = 0.02  # floor on the normalizer
    entropy_weight: float = 0.0  # beta; 0 reproduces the paper
    max_grad_norm: float = 0.0  # clip the gradient norm when > 0

    def to_dict(self) -> dict:
        return asdict(self)


@register_update_rule
class Reinforce:
    """`update(controller, rollout, rewards) -> metrics`; owns the optimizer and the baselines."""

    name = "reinforce"
    config_class = ReinforceConfig

    def __init__(self, controller: Controller, config: ReinforceConfig | dict | None = None):
        self.config = config if isinstance(config, ReinforceConfig) else ReinforceConfig(**(config or {}))
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=self.config.learning_rate)
        self.baselines = TaskBaselines(
            controller.num_tasks, decay=self.config.baseline_decay,
            min_std=self.config.min_std, normalization=self.config.normalization,
        )

    def update(self, controller: Controller, rollout: Rollout, rewards: list[float]) -> dict[str, float]:
        tasks = rollout.tasks.tolist()
        advantages = torch.tensor(self.baselines.advantages(tasks, list(rewards)), dtype=torch.float32)  # [n]
        log_probs, entropies = controller.log_prob(rollout.actions, rollout.tasks)  # [n], [n]
        loss = -(advantages * log_probs).mean() - self.config.entropy_weight * entropies.mean()
        self.optimizer.zero_grad()
        loss.backward()
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(controller.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        return {
            "controller/loss": float(loss.detach()),
            "controller/entropy": float(entropies.detach().mean()),
            "controller/advantage_mean": float(advantages.mean()),
            "controller/log_prob_mean": float(log_probs.detach().mean()),
        }

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "baselines": self.baselines.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.baselines = TaskBaselines.from_state_dict(state["baselines"])

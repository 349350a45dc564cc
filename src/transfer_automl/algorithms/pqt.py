"""REINFORCE + priority queue training + entropy (Transfer NAS, appendix A; Abolafia et al. 2018).

One priority queue per task keeps the K best unique action sequences seen so far. For a round of
n trials, trial i with task tau_i, actions m_i (M decisions) and reward R_i:

    A'_i   = normalized advantage of R_i against task tau_i's baseline (`TaskBaselines`)
    Q_tau <- Q_tau + (m_i, R_i)                        push every trial, then
    m~_i   ~ Uniform(Q_{tau_i})                         one queue sequence per trial

    J      = mean_i A'_i * log pi(m_i | tau_i)                          REINFORCE
    L      = mean_i log pi(m~_i | tau_i)                                PQT log-likelihood
    H      = mean_i (1/M) sum_m H(pi(. | m_i,<m; tau_i))                per-decision entropy
    loss   = - J  -  lambda_PQT * L  -  lambda_ENT * H

so that the gradient step follows grad J + lambda_PQT grad L + lambda_ENT grad H (equation 3).

Readings of the paper:
- Baselines are per (search space, task) pair; a search here has one space, so they are per task.
  The appendix writes R - b; the advantage here is normalized like REINFORCE's (`normalization`
  "std" or "baseline"), so rewards of different tasks weigh alike.
- "a uniformly sampled sequence over the top K experiences seen for (ss_i, t_j)": for each trial,
  one sequence is drawn uniformly from its task's queue (this rule's own seeded generator), so the
  PQT term is an unbiased estimate of the mean log-likelihood of the queue (Abolafia et al. use
  the whole queue). The queue is updated with the round's trials first (as Abolafia et al. do), so
  a task's queue is never empty when it is drawn from.
- H follows equation 2: the entropy of each decision's distribution along the sampled sequence,
  averaged over its M decisions (the controller returns the sum; it is divided by M, which in a
  conditional space counts the decisions that were actually sampled, see `sampled_decisions`).
- Learning rate: the paper's Adam step size is 5e-4 (section 3, "Training and transfer
  considerations"); K = 25, lambda_PQT = 5, lambda_ENT = 0.15 (appendix A).
- Queue order: best reward first; a sequence already queued keeps its maximum reward; when full, a
  new sequence enters only if its reward beats the worst, which is evicted (ties keep the incumbent).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from transfer_automl.algorithms.base import register_update_rule
from transfer_automl.algorithms.baselines import TaskBaselines
from transfer_automl.controllers.base import Controller, Rollout
from transfer_automl.errors import ConfigError


@dataclass(frozen=True)
class PQTConfig:
    learning_rate: float = 5e-4  # Adam step size (Transfer NAS, section 3)
    top_k: int = 25  # K: sequences kept per task's priority queue (appendix A)
    pqt_weight: float = 5.0  # lambda_PQT (appendix A)
    entropy_weight: float = 0.15  # lambda_ENT, on the per-decision entropy (appendix A)
    normalization: str = "std"  # "std" (T-AML) or "baseline" (MNMS)
    baseline_decay: float = 0.95  # EMA decay of the per-task baseline and std
    min_std: float = 0.02  # floor on the normalizer
    max_grad_norm: float = 0.0  # clip the gradient norm when > 0
    seed: int = 0  # seed of the generator that draws sequences from the queues

    def __post_init__(self) -> None:
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"pqt top_k must be an integer >= 1, got {self.top_k!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"pqt learning_rate must be > 0, got {self.learning_rate!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class PriorityQueue:
    """The `capacity` highest-reward unique action sequences, best first."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"priority queue capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: list[tuple[float, tuple[int, ...]]] = []  # (reward, actions), best first

    def push(self, actions: list[int] | tuple[int, ...], reward: float) -> bool:
        """Offer a sequence; returns whether the queue changed."""
        reward = float(reward)
        if math.isnan(reward):
            raise ValueError(f"priority queue reward must be a number, got {reward} for {list(actions)}")
        key = tuple(int(a) for a in actions)
        for i, (old_reward, old_key) in enumerate(self._items):
            if old_key == key:
                if reward <= old_reward:
                    return False  # a duplicate keeps its maximum reward
                del self._items[i]
                break
        # Insert after every item at least as good (stable: ties keep the incumbent first).
        position = next((i for i, (r, _) in enumerate(self._items) if r < reward), len(self._items))
        if position >= self.capacity:
            return False
        self._items.insert(position, (reward, key))
        del self._items[self.capacity:]  # evict the worst
        return True

    def items(self) -> list[tuple[float, tuple[int, ...]]]:
        """(reward, actions) pairs, best first."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def state(self) -> dict:
        return {
            "capacity": self.capacity,
            "rewards": [r for r, _ in self._items],
            "actions": [list(a) for _, a in self._items],
        }

    @classmethod
    def from_state(cls, state: dict) -> PriorityQueue:
        queue = cls(int(state["capacity"]))
        queue._items = [
            (float(r), tuple(int(x) for x in a)) for r, a in zip(state["rewards"], state["actions"], strict=True)
        ]
        return queue


def sampled_decisions(controller: torch.nn.Module, actions: torch.Tensor) -> torch.Tensor:
    """M_i, the number of decisions sampled for each trial: [n] float.

    All D columns for an unconditional controller; for one with `active_mask` (conditional
    spaces), the active decisions, less a root decision fixed by the task (`root_is_forced`),
    which is not sampled and has no entropy. At least 1.
    """
    if not hasattr(controller, "active_mask"):
        return torch.full((actions.shape[0],), float(actions.shape[1]))
    active = controller.active_mask(actions).clone()  # [n, D] bool
    if getattr(controller, "root_is_forced", False):
        active[:, 0] = False
    return active.sum(1).clamp(min=1).float()


@register_update_rule
class PQT:
    """`update(controller, rollout, rewards) -> metrics`; owns the optimizer, the baselines and
    one priority queue per task."""

    name = "pqt"
    config_class = PQTConfig

    def __init__(self, controller: Controller, config: PQTConfig | dict | None = None):
        self.config = config if isinstance(config, PQTConfig) else PQTConfig(**(config or {}))
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=self.config.learning_rate)
        self.baselines = TaskBaselines(
            controller.num_tasks, decay=self.config.baseline_decay,
            min_std=self.config.min_std, normalization=self.config.normalization,
        )
        self.queues = [PriorityQueue(self.config.top_k) for _ in range(controller.num_tasks)]
        self.generator = torch.Generator().manual_seed(self.config.seed)

    def draw_queue_actions(self, tasks: list[int]) -> torch.Tensor:
        """One sequence per entry of `tasks`, uniformly from that task's queue: [n, D] long."""
        drawn = []
        for task in tasks:
            items = self.queues[task].items()
            j = int(torch.randint(len(items), (1,), generator=self.generator))
            drawn.append(list(items[j][1]))
        return torch.tensor(drawn, dtype=torch.long)

    def update(self, controller: Controller, rollout: Rollout, rewards: list[float]) -> dict[str, float]:
        c = self.config
        tasks = rollout.tasks.to(torch.long)  # [n]
        actions = rollout.actions.to(torch.long)  # [n, M]
        task_list, rewards = tasks.tolist(), list(rewards)
        if not task_list:
            return {"controller/loss": 0.0}
        advantages = torch.tensor(self.baselines.advantages(task_list, rewards), dtype=torch.float32)  # [n]
        for task, row, reward in zip(task_list, actions.tolist(), rewards, strict=True):
            self.queues[task].push(row, reward)
        queue_actions = self.draw_queue_actions(task_list)  # [n, M]

        log_probs, entropies = controller.log_prob(actions, tasks)  # [n], [n] (summed over M)
        queue_log_probs, _ = controller.log_prob(queue_actions, tasks)  # [n]
        num_decisions = sampled_decisions(controller, actions)  # [n] M_i
        reinforce = (advantages * log_probs).mean()  # J
        likelihood = queue_log_probs.mean()  # L
        entropy = (entropies / num_decisions).mean()  # H
        loss = -reinforce - c.pqt_weight * likelihood - c.entropy_weight * entropy

        self.optimizer.zero_grad()
        loss.backward()
        if c.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(controller.parameters(), c.max_grad_norm)
        self.optimizer.step()
        return {
            "controller/loss": float(loss.detach()),
            "controller/reinforce_objective": float(reinforce.detach()),
            "controller/pqt_log_likelihood": float(likelihood.detach()),
            "controller/entropy": float(entropies.detach().mean()),
            "controller/entropy_per_decision": float(entropy.detach()),
            "controller/advantage_mean": float(advantages.mean()),
            "controller/log_prob_mean": float(log_probs.detach().mean()),
            "controller/queue_size_mean": sum(len(q) for q in self.queues) / len(self.queues),
        }

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "baselines": self.baselines.state_dict(),
            "queues": [q.state() for q in self.queues],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.baselines = TaskBaselines.from_state_dict(state["baselines"])
        self.queues = [PriorityQueue.from_state(q) for q in state["queues"]]
        self.generator.set_state(state["generator"])

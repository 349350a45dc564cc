"""Off-policy PPO with a multitask replay bank (MNMS, section 3.2 item 2 and section 4.1).

Two controllers: the ACTOR (the controller passed to `update`, the one the search samples from)
and the LEARNER (this rule's own copy, trained with Adam). For each trial i of a round, with
task tau_i and actions m_i:

    A'_i   = normalized advantage of R_i against task tau_i's baseline (`TaskBaselines`)
    mu_i   = log pi_actor(m_i | tau_i)           behaviour log-prob, at insertion time
    bank  <- bank + (tau_i, m_i, A'_i, mu_i)     FIFO, at most `replay_size` entries

Once `update_every` new samples have arrived since the last training, `gradient_steps` times:

    B      = `batch_size` indices drawn uniformly (with replacement) from the bank
    r_j    = exp(log pi_learner(m_j | tau_j) - mu_j)
    loss   = - mean_{j in B} min(r_j A'_j, clip(r_j, 1 - eps, 1 + eps) A'_j)  -  beta * mean_j H_j

then the actor moves toward the learner by a Polyak average with weight rho:

    theta_actor <- rho * theta_actor + (1 - rho) * theta_learner

Readings of the paper, which gives only "batches of size 20 with learning rate 5e-4, 25 gradient
steps before the weights between the two controllers are averaged with Polyak Average weight 0.9":
- "Polyak average weight 0.9" is the weight kept by the actor (rho = 0.9), the usual convention for
  a slowly moving copy; the learner is not reset and keeps training from its own weights.
- The paper calls the learner the "critic"; it has no value head here: it is a second policy
  trained with the clipped surrogate on replayed samples, whose advantage is the stored A'.
- The replay size and how often training runs are not given: training runs once per
  `update_every` = 20 new samples (one batch's worth) and the bank keeps the last 2000 samples.
- The advantage is computed once, at insertion, against the baseline of that moment; the
  behaviour log-prob is the actor's at insertion (the actor only changes after insertion).
- The learner starts as a copy of the actor when the rule is built, and is copied again from the
  actor at the first `update` of a rule that has never updated, so that a controller whose
  weights were loaded after the rule was built (transfer) is the learner's starting point. The
  actor's integer/boolean buffers (structure such as a transformer's task-to-space binding) are
  copied to the learner at every update; only weights are Polyak-averaged.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from transfer_automl.algorithms.base import register_update_rule
from transfer_automl.algorithms.baselines import TaskBaselines
from transfer_automl.controllers.base import Controller, Rollout
from transfer_automl.errors import ConfigError


@dataclass(frozen=True)
class PPOConfig:
    learning_rate: float = 5e-4  # Adam step size for the learner (MNMS)
    batch_size: int = 20  # replayed samples per gradient step (MNMS)
    gradient_steps: int = 25  # gradient steps per training, before the Polyak average (MNMS)
    clip: float = 0.2  # eps: ratios are clipped to [1 - eps, 1 + eps] (PPO default)
    polyak: float = 0.9  # rho: theta_actor <- rho * theta_actor + (1 - rho) * theta_learner (MNMS)
    replay_size: int = 2000  # FIFO replay bank capacity, in samples (not given by MNMS)
    update_every: int = 20  # train once this many new samples have arrived (not given by MNMS)
    normalization: str = "std"  # "std" (T-AML) or "baseline" (MNMS)
    baseline_decay: float = 0.95  # EMA decay of the per-task baseline and std
    min_std: float = 0.02  # floor on the normalizer
    entropy_weight: float = 0.0  # beta; 0 reproduces the paper
    max_grad_norm: float = 0.0  # clip the learner's gradient norm when > 0
    seed: int = 0  # seed of the generator that draws minibatches from the bank

    def __post_init__(self) -> None:
        for name in ("batch_size", "gradient_steps", "replay_size", "update_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"ppo {name} must be an integer >= 1, got {value!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"ppo learning_rate must be > 0, got {self.learning_rate!r}")
        if not self.clip > 0:
            raise ConfigError(f"ppo clip must be > 0, got {self.clip!r}")
        if not 0.0 <= self.polyak <= 1.0:
            raise ConfigError(f"ppo polyak must be in [0, 1], got {self.polyak!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def clipped_surrogate_loss(log_probs: Tensor, behaviour_log_probs: Tensor, advantages: Tensor, clip: float) -> Tensor:
    """- mean_j min(r_j A_j, clip(r_j, 1 - eps, 1 + eps) A_j), r_j = exp(log_probs_j - behaviour_log_probs_j).

    All inputs [n]; gradients flow through `log_probs` only. Returns a scalar.
    """
    ratio = torch.exp(log_probs - behaviour_log_probs)  # [n]
    unclipped = ratio * advantages  # [n]
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages  # [n]
    return -torch.min(unclipped, clipped).mean()


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, weight: float) -> None:
    """In place: theta_target <- weight * theta_target + (1 - weight) * theta_source.

    Parameters and floating-point buffers are averaged; integer and boolean buffers (structure,
    counters) are the target's own and are left as they are.
    """
    target_tensors = dict(target.named_parameters()) | dict(target.named_buffers())
    source_tensors = dict(source.named_parameters()) | dict(source.named_buffers())
    if target_tensors.keys() != source_tensors.keys():
        raise ValueError(
            f"polyak_update needs modules with the same tensors; only in target: "
            f"{sorted(target_tensors.keys() - source_tensors.keys())}, only in source: "
            f"{sorted(source_tensors.keys() - target_tensors.keys())}"
        )
    for name, t in target_tensors.items():
        if t.is_floating_point():
            t.mul_(weight).add_(source_tensors[name], alpha=1.0 - weight)


@torch.no_grad()
def _copy_structure(learner: nn.Module, actor: nn.Module) -> None:
    """The actor's integer and boolean buffers (e.g. which root action each task is bound to) are
    settings, not weights: the learner follows them, so both score actions the same way."""
    learner_buffers = dict(learner.named_buffers())
    for name, buffer in actor.named_buffers():
        if not buffer.is_floating_point():
            learner_buffers[name].copy_(buffer)


@register_update_rule
class PPO:
    """`update(actor, rollout, rewards) -> metrics`; owns the learner, its optimizer, the replay
    bank and the baselines. The actor is changed only by the Polyak average."""

    name = "ppo"
    config_class = PPOConfig

    def __init__(self, controller: Controller, config: PPOConfig | dict | None = None):
        self.config = config if isinstance(config, PPOConfig) else PPOConfig(**(config or {}))
        self.learner = copy.deepcopy(controller)
        self.learner.requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.learner.parameters(), lr=self.config.learning_rate)
        self.baselines = TaskBaselines(
            controller.num_tasks, decay=self.config.baseline_decay,
            min_std=self.config.min_std, normalization=self.config.normalization,
        )
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.updates = 0  # calls to `update`
        self.trainings = 0  # trainings run (each `gradient_steps` steps and one Polyak average)
        self.reset_replay()

    def reset_replay(self) -> None:
        """Empty the replay bank (MNMS restarts it on transfer, so only new rewards are replayed)."""
        self.replay_tasks = torch.empty(0, dtype=torch.long)  # [N]
        self.replay_actions = torch.empty(0, 0, dtype=torch.long)  # [N, D]
        self.replay_advantages = torch.empty(0)  # [N]
        self.replay_behaviour_log_probs = torch.empty(0)  # [N]
        self.new_samples = 0  # samples inserted since the last training

    @property
    def replay_len(self) -> int:
        return int(self.replay_tasks.shape[0])

    def _insert(self, tasks: Tensor, actions: Tensor, advantages: Tensor, behaviour_log_probs: Tensor) -> None:
        keep = self.config.replay_size
        if self.replay_len == 0:
            self.replay_actions = actions.new_empty(0, actions.shape[1])
        self.replay_tasks = torch.cat([self.replay_tasks, tasks])[-keep:].clone()  # [N]
        self.replay_actions = torch.cat([self.replay_actions, actions])[-keep:].clone()  # [N, D]
        self.replay_advantages = torch.cat([self.replay_advantages, advantages])[-keep:].clone()  # [N]
        self.replay_behaviour_log_probs = torch.cat(
            [self.replay_behaviour_log_probs, behaviour_log_probs]
        )[-keep:].clone()  # [N]
        self.new_samples += int(tasks.shape[0])

    def update(self, controller: Controller, rollout: Rollout, rewards: list[float]) -> dict[str, float]:
        c = self.config
        if self.updates == 0:
            self.learner.load_state_dict(controller.state_dict())  # start from the actor as it is now
        _copy_structure(self.learner, controller)
        self.updates += 1

        tasks = rollout.tasks.to(torch.long)  # [n]
        actions = rollout.actions.to(torch.long)  # [n, D]
        advantages = torch.tensor(self.baselines.advantages(tasks.tolist(), list(rewards)), dtype=torch.float32)  # [n]
        with torch.no_grad():
            behaviour_log_probs, entropies = controller.log_prob(actions, tasks)  # [n], [n]
        if tasks.shape[0]:
            self._insert(tasks, actions, advantages, behaviour_log_probs.detach().float())

        metrics = {
            "controller/loss": 0.0, "controller/ratio_mean": 1.0, "controller/clip_fraction": 0.0,
            "controller/entropy": float(entropies.mean()) if tasks.shape[0] else 0.0,
            "controller/advantage_mean": float(advantages.mean()) if tasks.shape[0] else 0.0,
            "controller/replay_size": float(self.replay_len), "controller/trained": 0.0,
        }
        if self.new_samples < c.update_every:
            return metrics

        losses, ratios, clipped = [], [], []
        for _ in range(c.gradient_steps):
            idx = torch.randint(self.replay_len, (c.batch_size,), generator=self.generator)  # [B]
            log_probs, batch_entropies = self.learner.log_prob(self.replay_actions[idx], self.replay_tasks[idx])  # [B], [B]
            behaviour = self.replay_behaviour_log_probs[idx]  # [B]
            loss = clipped_surrogate_loss(log_probs, behaviour, self.replay_advantages[idx], c.clip)
            loss = loss - c.entropy_weight * batch_entropies.mean()
            self.optimizer.zero_grad()
            loss.backward()
            if c.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.learner.parameters(), c.max_grad_norm)
            self.optimizer.step()
            with torch.no_grad():
                ratio = torch.exp(log_probs - behaviour)  # [B]
                losses.append(float(loss.detach()))
                ratios.append(float(ratio.mean()))
                clipped.append(float(((ratio - 1.0).abs() > c.clip).float().mean()))
        polyak_update(controller, self.learner, c.polyak)
        self.new_samples = 0
        self.trainings += 1
        metrics.update({
            "controller/loss": sum(losses) / len(losses),
            "controller/ratio_mean": sum(ratios) / len(ratios),
            "controller/clip_fraction": sum(clipped) / len(clipped),
            "controller/trained": 1.0,
        })
        return metrics

    def state_dict(self) -> dict:
        return {
            "learner": self.learner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baselines": self.baselines.state_dict(),
            "replay": {
                "tasks": self.replay_tasks.clone(), "actions": self.replay_actions.clone(),
                "advantages": self.replay_advantages.clone(),
                "behaviour_log_probs": self.replay_behaviour_log_probs.clone(),
            },
            "new_samples": self.new_samples,
            "updates": self.updates,
            "trainings": self.trainings,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baselines = TaskBaselines.from_state_dict(state["baselines"])
        replay = state["replay"]
        self.replay_tasks = replay["tasks"].to(torch.long).clone()
        self.replay_actions = replay["actions"].to(torch.long).clone()
        self.replay_advantages = replay["advantages"].float().clone()
        self.replay_behaviour_log_probs = replay["behaviour_log_probs"].float().clone()
        self.new_samples = int(state["new_samples"])
        self.updates = int(state["updates"])
        self.trainings = int(state["trainings"])
        self.generator.set_state(state["generator"])

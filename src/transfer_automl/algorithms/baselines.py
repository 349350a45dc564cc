"""Per-task exponential-moving-average baseline and standard deviation.

Transfer AutoML, section 2.2: A'_tau(m) = (R_tau(m) - b_tau) / sigma_tau, with b_tau and sigma_tau
exponential moving averages over task tau's rewards ("std" normalization).
MNMS, section 3: A'_tau(m) = (R_tau(m) - b_tau) / b_tau ("baseline" normalization).

Update with decay alpha, for one reward R of task tau (the first reward only sets b = R):
    delta = R - b
    b     <- b + (1 - alpha) * delta
    var   <- alpha * (var + (1 - alpha) * delta^2)
The advantage of a reward is computed from the statistics *before* that reward is observed, so
a reward is never compared with a baseline that already contains it. sigma is floored at
`min_std` so that the first few updates, when var is near zero, do not explode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

NORMALIZATIONS = ("std", "baseline")


@dataclass
class TaskBaselines:
    num_tasks: int
    decay: float = 0.95  # alpha: weight of the past in the EMA
    min_std: float = 0.02  # floor on sigma (and on |b| for "baseline")
    normalization: str = "std"  # "std": (R - b) / sigma; "baseline": (R - b) / b
    mean: list[float] = field(default_factory=list)
    var: list[float] = field(default_factory=list)
    count: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"baseline decay must be in [0, 1), got {self.decay}")
        self.mean = self.mean or [0.0] * self.num_tasks
        self.var = self.var or [0.0] * self.num_tasks
        self.count = self.count or [0] * self.num_tasks

    def std(self, task: int) -> float:
        return max(math.sqrt(self.var[task]), self.min_std)

    def advantage(self, task: int, reward: float) -> float:
        """Normalized advantage of `reward` against the current statistics of `task`."""
        if self.count[task] == 0:
            return 0.0  # no baseline yet: this reward only initializes it
        centered = reward - self.mean[task]
        if self.normalization == "std":
            return centered / self.std(task)
        return centered / max(abs(self.mean[task]), self.min_std)

    def observe(self, task: int, reward: float) -> None:
        if self.count[task] == 0:
            self.mean[task] = reward
            self.var[task] = 0.0
        else:
            delta = reward - self.mean[task]
            self.mean[task] += (1.0 - self.decay) * delta
            self.var[task] = self.decay * (self.var[task] + (1.0 - self.decay) * delta * delta)
        self.count[task] += 1

    def advantages(self, tasks: list[int], rewards: list[float]) -> list[float]:
        """Advantages of a batch against the statistics before the batch, then observe it."""
        out = [self.advantage(t, r) for t, r in zip(tasks, rewards, strict=True)]
        for t, r in zip(tasks, rewards, strict=True):
            self.observe(t, r)
        return out

    def add_task(self) -> int:
        self.mean.append(0.0)
        self.var.append(0.0)
        self.count.append(0)
        self.num_tasks += 1
        return self.num_tasks - 1

    def state_dict(self) -> dict:
        return {
            "decay": self.decay, "min_std": self.min_std, "normalization": self.normalization,
            "mean": list(self.mean), "var": list(self.var), "count": list(self.count),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> TaskBaselines:
        return cls(
            num_tasks=len(state["mean"]), decay=float(state["decay"]), min_std=float(state["min_std"]),
            normalization=str(state["normalization"]), mean=[float(x) for x in state["mean"]],
            var=[float(x) for x in state["var"]], count=[int(x) for x in state["count"]],
        )

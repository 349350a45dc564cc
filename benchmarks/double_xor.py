"""The double-XOR toy of Transfer NAS (section 4.1, Figure 3): LSTM agent versus attention agent.

A chain of 7 binary decisions a1..a7 and the reward

    R(a) = (a1 xor a5) and (a3 xor a7)            ("and", the paper's a1 (+) a5 /\\ a3 (+) a7)

in {0, 1}: a uniform policy earns 1/4, the best policies 1. The XOR pairs are interleaved and
four steps apart, so an agent that mostly conditions on the last action has to carry a1 and a3
across the chain. `reward="mean"` gives the denser variant ((a1 xor a5) + (a3 xor a7)) / 2
(uniform policy: 1/2); the paper does not normalize (its reward is already in {0, 1}).

Both agents learn with the repository's REINFORCE (`algorithms.Reinforce`: per-task EMA baseline
and std normalization, Adam, no entropy bonus) from `batch_size` samples per update, with ONE
shared learning rate (`SHARED_LEARNING_RATE`) unless `--lr-grid` gives each agent its best rate
from a grid (best = its mean curve reaches the threshold first). The agents have the house
defaults: the LSTM the papers' 2 x 50 units (~42k parameters), the attention agent the Transfer
NAS sizes (~9k parameters). The result per agent is the moving average of the reward over the
last `window` samples, averaged over seeds, and the number of samples until that average first
reaches `threshold` (per seed, and for the mean curve).

    python -m benchmarks.double_xor                        # ~10 s on one core
    python -m benchmarks.double_xor --lr-grid 0.003,0.01,0.03

Measured (5 seeds, batch 8, window 100, threshold 0.9; samples until the mean curve reaches it,
attention agent versus LSTM): at learning rate 0.001: 1147 vs never within 2000; 0.003: 482 vs
743; 0.01 (the default): 220 vs 288; 0.03: 142 vs 182; 0.1: 123 vs 123. With the grid
0.001..0.1 each agent's best is 0.1, where both collapse onto one rewarding sequence within a
few updates (the window alone costs 100 samples). So on this toy the attention agent learns
faster at a given step size, but at their best step sizes the agents tie. Neither needs the
long-range dependency to score 1 (a fixed sequence does); with an entropy bonus of 0.5 (3 seeds,
3000 samples, lr 0.01) one LSTM seed and no attention seed kept a1 and a3 random at reward 1,
the only policy that truly uses the dependency.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor

from transfer_automl.algorithms import Reinforce
from transfer_automl.controllers import LSTMController, LSTMControllerConfig, Rollout
from transfer_automl.controllers.transformer import (
    TransformerController,
    TransformerControllerConfig,
)
from transfer_automl.space import Decision, SearchSpace

DOUBLE_XOR = SearchSpace("double-xor", tuple(Decision(f"a{i}", (0, 1)) for i in range(1, 8)))
REWARDS = ("and", "mean")
AGENTS = ("lstm", "transformer")
SHARED_LEARNING_RATE = 0.01  # Adam step size of both agents unless --lr-grid picks each its best


@dataclass(frozen=True)
class DoubleXorSettings:
    """One benchmark run; every field is printed with the results."""

    samples: int = 1500  # sampled sequences (= rewards) per agent and seed
    seeds: int = 5  # replicas per agent (the paper plots 5)
    batch_size: int = 8  # samples per REINFORCE update
    reward: str = "and"  # "and" (the paper) or "mean"
    window: int = 100  # moving-average window, in samples
    threshold: float = 0.9  # samples-to-threshold: first sample where the moving average >= this
    learning_rates: dict[str, float] = field(default_factory=lambda: dict.fromkeys(AGENTS, SHARED_LEARNING_RATE))
    entropy_weight: float = 0.0  # REINFORCE entropy bonus, both agents
    lstm: dict = field(default_factory=dict)  # LSTMControllerConfig overrides (defaults: the papers')
    transformer: dict = field(default_factory=dict)  # TransformerControllerConfig overrides

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")
        for name in ("samples", "seeds", "batch_size", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        missing = [a for a in AGENTS if a not in self.learning_rates]
        if missing:
            raise ValueError(f"learning_rates lacks agent(s) {missing}")


def double_xor_reward(actions: Tensor, reward: str = "and") -> Tensor:
    """actions: [n, 7] in {0, 1} -> rewards [n] float."""
    first = actions[:, 0] ^ actions[:, 4]  # a1 xor a5
    second = actions[:, 2] ^ actions[:, 6]  # a3 xor a7
    if reward == "and":
        return (first & second).float()
    return (first + second).float() / 2.0


def build_agent(kind: str, settings: DoubleXorSettings, seed: int) -> torch.nn.Module:
    """The agent, initialized from `seed` without touching the global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if kind == "lstm":
            return LSTMController(DOUBLE_XOR.cardinalities, 1, LSTMControllerConfig(**settings.lstm))
        if kind == "transformer":
            return TransformerController(DOUBLE_XOR, 1, TransformerControllerConfig(**settings.transformer))
    raise ValueError(f"agent must be one of {AGENTS}, got {kind!r}")


def train_agent(kind: str, settings: DoubleXorSettings, seed: int) -> list[float]:
    """Rewards of the `settings.samples` sequences an agent samples while it learns."""
    agent = build_agent(kind, settings, seed)
    rule = Reinforce(agent, {"learning_rate": settings.learning_rates[kind], "entropy_weight": settings.entropy_weight})
    generator = torch.Generator().manual_seed(10_000 + seed)
    rewards: list[float] = []
    while len(rewards) < settings.samples:
        n = min(settings.batch_size, settings.samples - len(rewards))
        tasks = torch.zeros(n, dtype=torch.long)
        rollout: Rollout = agent.sample(tasks, generator)
        r = double_xor_reward(rollout.actions, settings.reward).tolist()
        rule.update(agent, rollout, r)
        rewards.extend(r)
    return rewards


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Mean of the last `window` values at each position (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def samples_to_threshold(curve: Sequence[float], threshold: float, window: int) -> int | None:
    """1-based sample count at which a full-window moving average first reaches `threshold`."""
    for i in range(window - 1, len(curve)):
        if curve[i] >= threshold:
            return i + 1
    return None


@dataclass
class AgentResult:
    agent: str
    learning_rate: float
    curve: list[float]  # mean over seeds of the moving-average reward, per sample
    per_seed_samples: list[int | None]  # samples to threshold per seed (None: not reached)
    mean_curve_samples: int | None  # samples to threshold of the mean curve
    final: float  # last value of the mean curve
    parameters: int
    seconds: float


def run_double_xor(settings: DoubleXorSettings, agents: Sequence[str] = AGENTS) -> dict[str, AgentResult]:
    """Train every agent on every seed with its learning rate from `settings.learning_rates`."""
    results = {}
    for kind in agents:
        start = time.perf_counter()
        curves = []
        per_seed = []
        for seed in range(settings.seeds):
            curve = moving_average(train_agent(kind, settings, seed), settings.window)
            curves.append(curve)
            per_seed.append(samples_to_threshold(curve, settings.threshold, settings.window))
        mean = [sum(c[i] for c in curves) / len(curves) for i in range(settings.samples)]
        results[kind] = AgentResult(
            agent=kind, learning_rate=settings.learning_rates[kind], curve=mean, per_seed_samples=per_seed,
            mean_curve_samples=samples_to_threshold(mean, settings.threshold, settings.window), final=mean[-1],
            parameters=sum(p.numel() for p in build_agent(kind, settings, 0).parameters()),
            seconds=time.perf_counter() - start,
        )
    return results


def run_grid(settings: DoubleXorSettings, learning_rates: Sequence[float]) -> tuple[dict[str, AgentResult], list[AgentResult]]:
    """Each agent at every learning rate of the grid; its best is the one whose mean curve
    reaches the threshold first (ties and misses: the higher final moving average)."""
    rows: list[AgentResult] = []
    for lr in learning_rates:
        rows.extend(run_double_xor(replace(settings, learning_rates=dict.fromkeys(AGENTS, lr))).values())

    def rank(r: AgentResult) -> tuple[float, float]:
        return (r.mean_curve_samples if r.mean_curve_samples is not None else float("inf"), -r.final)

    best = {kind: min((r for r in rows if r.agent == kind), key=rank) for kind in AGENTS}
    return best, rows


def _print_table(results: Sequence[AgentResult], settings: DoubleXorSettings, marked: Sequence[AgentResult] = ()) -> None:
    checkpoints = sorted({min(settings.samples, s) for s in (250, 500, 1000, settings.samples)})
    head = "".join(f"{'MA@' + str(s):>9}" for s in checkpoints)
    print(f"{'agent':<12}{'lr':>7}{'params':>8}{head}{'reach(mean)':>13}  {'reach per seed':<28}{'secs':>6}")
    for r in results:
        values = "".join(f"{r.curve[s - 1]:>9.3f}" for s in checkpoints)
        reach = "-" if r.mean_curve_samples is None else str(r.mean_curve_samples)
        per_seed = ",".join("-" if s is None else str(s) for s in r.per_seed_samples)
        mark = " *" if any(r is m for m in marked) else ""
        print(f"{r.agent:<12}{r.learning_rate:>7g}{r.parameters:>8}{values}{reach:>13}  {per_seed:<28}{r.seconds:>6.1f}{mark}")


def main(argv: Sequence[str] | None = None) -> int:
    default = DoubleXorSettings()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.double_xor", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=default.samples)
    parser.add_argument("--seeds", type=int, default=default.seeds)
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument("--reward", choices=REWARDS, default=default.reward)
    parser.add_argument("--window", type=int, default=default.window)
    parser.add_argument("--threshold", type=float, default=default.threshold)
    parser.add_argument("--learning-rate", type=float, default=SHARED_LEARNING_RATE, help="shared by both agents")
    parser.add_argument("--lr-grid", default="", help="comma-separated learning rates: each agent gets its best")
    parser.add_argument("--entropy-weight", type=float, default=default.entropy_weight)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny models: 1 is fastest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = DoubleXorSettings(
        samples=args.samples, seeds=args.seeds, batch_size=args.batch_size, reward=args.reward, window=args.window,
        threshold=args.threshold, learning_rates=dict.fromkeys(AGENTS, args.learning_rate),
        entropy_weight=args.entropy_weight,
    )
    command = "python -m benchmarks.double_xor " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"command: {command.strip()}")
    print(f"settings: {asdict(settings) if not args.lr_grid else {**asdict(settings), 'learning_rates': args.lr_grid}}")
    uniform = 0.25 if settings.reward == "and" else 0.5
    print(f"uniform policy expects {uniform}; reach = samples until the {settings.window}-sample moving average "
          f"(MA) >= {settings.threshold}")
    if args.lr_grid:
        best, rows = run_grid(settings, [float(x) for x in args.lr_grid.split(",") if x.strip()])
        _print_table(rows, settings, marked=list(best.values()))
        print("* each agent's best learning rate")
    else:
        _print_table(list(run_double_xor(settings).values()), settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

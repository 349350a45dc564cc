"""Multi-fidelity search: successive halving over the children's training budget.

A child's *budget* is the fraction of its configuration's training steps it trains for. The rungs
are the budgets r_k = max_budget * eta^(k - K), k = 0..K, K = floor(log_eta(max_budget /
min_budget)) (Hyperband's geometric rungs, Li et al. 2017, "Hyperband", JMLR 18; the top rung is
max_budget, the bottom one the smallest at or above min_budget). Every configuration the search
proposes trains at r_0; a *promotion* continues a child from its weights (children/trainer.py:
`train(..., budget, resume)`) up to the next rung, never from scratch.

Who is promoted (per task: accuracies of different tasks are not comparable):

* `asha`, asynchronous successive halving (Li et al. 2020, "A System for Massively Parallel
  Hyperparameter Tuning", MLSys, Algorithm 2): a child of rung k is promotable as soon as it is
  in the top floor(n_k / eta) of the n_k results rung k holds *so far* and has not been promoted
  yet; higher rungs first. Nobody waits for a rung to fill, so a round asks its new
  configurations and, beside them, every promotion the results so far allow.
* `sha`, synchronous successive halving (Jamieson & Talwalkar 2016, "Non-stochastic Best Arm
  Identification and Hyperparameter Optimization", AISTATS; Karnin et al. 2013): each round is
  one bracket. Its n new configurations train at r_0; when all of them have, the top
  max(1, floor(n_k / eta)) of each task go on to r_1, and so on up to r_K, before the round ends.
  (At least one per task, so each task's best reaches the top rung even in small rounds.)

What the search learns from (every method, the RL controllers included): each configuration's
rung-0 result, told in the round that asked it. Every configuration has one, all at the same
budget, so a controller's per-task baseline b and spread sigma (algorithms/baselines.py) are
the rung-0 statistics: the normalization is per rung, and with one rung told, per task as
before. This follows the RL searches that train children briefly and use that accuracy as the
reward: Zoph et al. 2018 ("Learning Transferable Architectures", CVPR: 20 epochs as a proxy),
Zhong et al. 2018 (BlockQNN, CVPR: the "early stop strategy", an early-stopped accuracy as the
reward, justified by its rank correlation with the final one) and Baker et al. 2018 ("Accelerating
Neural Architecture Search using Performance Prediction", ICLR workshop: the controller learns
from an early, partial-training signal). BOHB (Falkner et al. 2018, ICML) instead fits its model
on the highest budget with enough observations; a policy-gradient controller's EMA baseline
needs one reward scale throughout, and a configuration's higher rungs arrive rounds after its
update (ASHA) or only for the few promoted, so mixing them would compare rewards of different
budgets against one baseline. Promoted results go to the ledger, the tracker and the summaries:
a configuration is reported at the highest rung it reached (`highest_rungs`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from transfer_automl.errors import ConfigError
from transfer_automl.trial_status import STATUS_OK

FIDELITIES = ("none", "asha", "sha")


class RungResult(Protocol):
    """What a promotion decision reads of a ledger row (search.ledger.LedgerRow)."""

    trial_id: str
    task: str
    rung: int
    status: str
    val_accuracy: float
    reward: float  # what the search learns from (the accuracy, or its cost-aware form)
    parent_trial_id: str | None


@dataclass(frozen=True)
class Rungs:
    """The budgets of successive halving: fractions of a child's training steps."""

    min_budget: float
    max_budget: float
    eta: float

    def __post_init__(self) -> None:
        if not 0 < self.max_budget <= 1:
            raise ConfigError(f"max_budget must be in (0, 1] (a fraction of the child's training budget), got "
                              f"{self.max_budget!r}")
        if not 0 < self.min_budget <= self.max_budget:
            raise ConfigError(f"min_budget must be in (0, max_budget={self.max_budget:g}], got {self.min_budget!r}")
        if not self.eta > 1:
            raise ConfigError(f"eta must be > 1, got {self.eta!r}")

    @property
    def budgets(self) -> list[float]:
        """r_0 < ... < r_K = max_budget, r_k = max_budget * eta^(k - K)."""
        top = math.floor(math.log(self.max_budget / self.min_budget) / math.log(self.eta) + 1e-9)
        return [self.max_budget * self.eta ** (k - top) for k in range(top + 1)]

    @property
    def top(self) -> int:
        return len(self.budgets) - 1


def _rank_key(row: RungResult) -> tuple[float, str]:
    """Best first: a higher reward (the validation accuracy's, cost-aware with --cost-target-s: the
    promotions see what the search sees); a child that did not train ranks last; ties by id."""
    ok = row.status == STATUS_OK and math.isfinite(row.val_accuracy) and math.isfinite(row.reward)
    return (-row.reward if ok else math.inf, row.trial_id)


def asha_promotions(rows: Iterable[RungResult], rungs: Rungs, eta: float,
                    already: Iterable[str] = ()) -> list[RungResult]:
    """ASHA: the children promotable now, per task, higher rungs first; `already` are the trial
    ids with a promotion asked but not yet run."""
    rows = list(rows)
    promoted = {r.parent_trial_id for r in rows if r.parent_trial_id} | set(already)
    out: list[RungResult] = []
    for task in sorted({r.task for r in rows}):
        for k in range(rungs.top - 1, -1, -1):
            members = sorted((r for r in rows if r.task == task and r.rung == k), key=_rank_key)
            keep = math.floor(len(members) / eta + 1e-9)
            out.extend(r for r in members[:keep] if r.status == STATUS_OK and r.trial_id not in promoted)
    return out


def sha_promotions(round_rows: Iterable[RungResult], rungs: Rungs, eta: float) -> list[RungResult]:
    """Synchronous SHA within one bracket (a round's rows, every child of its highest rung run):
    the top max(1, floor(n / eta)) of each task at that rung, unless it is the top rung."""
    rows = list(round_rows)
    if not rows:
        return []
    k = max(r.rung for r in rows)
    if k >= rungs.top:
        return []
    out: list[RungResult] = []
    for task in sorted({r.task for r in rows}):
        members = sorted((r for r in rows if r.task == task and r.rung == k), key=_rank_key)
        keep = max(1, math.floor(len(members) / eta + 1e-9))
        out.extend(r for r in members[:keep] if r.status == STATUS_OK)
    return out


def highest_rungs(rows: Sequence[Any]) -> list[Any]:
    """Each configuration once, at the highest rung it reached: the rows nobody continued (a
    ledger without promotions is returned whole). Rows are LedgerRows or their dicts."""
    def get(row: Any, name: str) -> Any:
        return row[name] if isinstance(row, dict) else getattr(row, name)

    continued = {get(r, "parent_trial_id") for r in rows if get(r, "parent_trial_id")}
    if not continued:
        return list(rows)
    return [r for r in rows if get(r, "trial_id") not in continued]


def lineage_root(trial_id: str, parents: dict[str, str | None]) -> str:
    """The rung-0 trial a promoted trial descends from (`parents`: trial id -> parent id)."""
    seen = set()
    while parents.get(trial_id) and trial_id not in seen:
        seen.add(trial_id)
        trial_id = parents[trial_id]
    return trial_id

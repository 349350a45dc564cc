"""Transfer from earlier searches' results: source surrogates weighted by how well they rank the
target's own results (RGPE, Feurer et al. 2018), next to a surrogate of the target itself.

`--method rank-ensemble --method-option sources=DIR[,DIR...]` reads the ledgers of earlier searches
(search directories, local or `s3://`, or a Parquet file with the ledger's `task`, `config` and
`val_accuracy` columns). Every task in them is a source s with observations (x, y_s(x)).

Model. Each source gets a kernel ridge regression f_s on its Gaussian-copula values

    z_s(x) = Phi^-1( rank(y_s(x)) / (n_s + 1) )           (Salinas et al. 2020: scale-free values)
    f_s = argmin_f sum_x (z_s(x) - f(x))^2 + lambda_s ||f||^2,   k(x, x') = 1 + m + m (m - 1) / 2

where m is the number of decisions on which x and x' agree: the kernel of one-hot main effects
plus all pairwise interactions, so f_s is a ridge regression on those features, computed in its
dual (n_s x n_s) form whatever the size of the space. The target t gets its own f_t on its own
copula values with the main-effects kernel k_t = 1 + m (few points: few parameters).

Weights (RGPE). After n target results, draw B bootstrap samples of them; in each, the ranking
loss of a model is the number of ordered pairs (i, j) it misranks,

    L(f, b) = sum_{i, j in b} 1[ (f(x_i) < f(x_j)) xor (y_i < y_j) ],

with f_t's leave-one-out predictions standing in for f_t. A model's weight w_f is the share of
samples in which its loss is the smallest (ties share). Until the target has `warmup` results
every source weighs the same; f_t joins once the target has 3.

Proposal. Each model's predictions over the candidates are standardized; the score is
sum_f w_f * f(x); the proposal is the best-scored candidate the target has not evaluated (nor been
proposed in the same round). Candidates are the whole space when it has at most `max_candidates`
configurations, else the sources' configurations, the target's and `max_candidates` uniform
draws. With no sources it is a scratch search: uniform draws until f_t exists, then f_t alone.
When the sources stop predicting the target's results, f_t wins the bootstrap and takes over:
transfer that does not hurt.

Readings: ties in y share average ranks; a repeated configuration in a source keeps its mean
value; the target's observations are the rewards told (monotone in val_accuracy, so ranks and
copula values are unchanged).

State: the settings, the source observations as read (so a resumed search does not read the
source ledgers again and proposes exactly what the original would have), each task's results in
order, and the generator (base class). Sources are read at the first `ask`, not in the
constructor, so restoring a checkpoint never needs the source files.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from transfer_automl.errors import ConfigError, SearchSpaceError
from transfer_automl.search.base import Search, Trial, register_search
from transfer_automl.search.random_search import check_state_header, uniform_actions
from transfer_automl.space import SearchSpace

TARGET_MIN = 3  # target results before f_t exists (its leave-one-out needs >= 2 others)


# -- pure maths helpers (numeric tests in tests/unit/test_rank_ensemble.py) -------------------


def copula_values(y: np.ndarray) -> np.ndarray:
    """Phi^-1(rank / (n + 1)) with average ranks for ties: [n] -> [n]."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    order = np.argsort(y, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(1, n + 1, dtype=np.float64)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inverse, weights=ranks) / counts)[inverse]
    inv = NormalDist().inv_cdf
    return np.array([inv(r / (n + 1)) for r in ranks])


def matches(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """m[i, j] = decisions on which a[i] and b[j] agree: [p, D] x [q, D] -> [p, q]."""
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    for d in range(a.shape[1]):
        out += a[:, d, None] == b[None, :, d]
    return out


def pair_kernel(m: np.ndarray) -> np.ndarray:
    """Kernel of one-hot main effects and all pairwise interactions: 1 + m + m(m-1)/2."""
    return 1.0 + m + m * (m - 1.0) / 2.0


def main_kernel(m: np.ndarray) -> np.ndarray:
    """Kernel of one-hot main effects: 1 + m."""
    return 1.0 + m


def kernel_ridge(k_train: np.ndarray, z: np.ndarray, ridge: float) -> np.ndarray:
    """Dual coefficients alpha = (K + lambda I)^-1 z: [n, n], [n] -> [n]."""
    return np.linalg.solve(k_train + ridge * np.eye(len(z)), z)


def loo_predictions(k_train: np.ndarray, z: np.ndarray, ridge: float) -> np.ndarray:
    """Leave-one-out predictions of kernel ridge in closed form: z_i - r_i / (1 - H_ii), with
    H = K (K + lambda I)^-1 and r = z - H z."""
    h = k_train @ np.linalg.inv(k_train + ridge * np.eye(len(z)))
    resid = z - h @ z
    return z - resid / (1.0 - np.diag(h))


def misranked_pairs(pred: np.ndarray, y: np.ndarray) -> int:
    """Ordered pairs (i, j) with (pred_i < pred_j) xor (y_i < y_j)."""
    return int(((pred[:, None] < pred[None, :]) != (y[:, None] < y[None, :])).sum())


def bootstrap_weights(preds: np.ndarray, y: np.ndarray, samples: torch.Tensor) -> np.ndarray:
    """RGPE weights: the share of bootstrap samples in which each model misranks fewest pairs.

    preds [M, n] (model predictions at the n target results), y [n], samples [B, n] indices."""
    wins = np.zeros(len(preds))
    for idx in samples.numpy():
        losses = np.array([misranked_pairs(p[idx], y[idx]) for p in preds])
        best = np.flatnonzero(losses == losses.min())
        wins[best] += 1.0 / len(best)
    return wins / len(samples)


def standardized(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


# -- reading sources ------------------------------------------------------------------------


def read_sources(locations: str, space: SearchSpace) -> dict[str, dict[str, list]]:
    """{task: {"actions": [[...]], "values": [...]}} from comma-separated search directories
    (local or s3://) or Parquet files with columns task, config (JSON) and val_accuracy; only
    rows with status ok (where there is a status) and a finite value; configurations of another
    space are skipped, a location with none of this space is an error naming it."""
    import pyarrow.parquet as pq

    from transfer_automl.search.ledger import Ledger
    from transfer_automl.storage import get_store, is_remote

    sums: dict[str, dict[tuple[int, ...], list[float]]] = {}
    for location in [p.strip() for p in locations.split(",") if p.strip()]:
        if not is_remote(location) and Path(location).is_file():
            table = pq.read_table(location)
        elif is_remote(location) and location.endswith(".parquet"):  # e.g. a --transfer auto search's sources
            from transfer_automl.storage import split_uri

            store, key = split_uri(location)
            table = store.read_parquet(key)
        else:
            store = get_store(location)  # a search directory, or its ledger directory itself
            ledger = store.sub("ledger") if store.list("ledger/") else store
            table = Ledger(ledger).read()
            if not table.num_rows:
                raise ConfigError(f"method_options.sources: {location} holds no ledger rows")
        missing = sorted({"task", "config", "val_accuracy"} - set(table.column_names))
        if missing:
            raise ConfigError(f"method_options.sources: {location} has no column(s) {missing}")
        statuses = table.column("status").to_pylist() if "status" in table.column_names else None
        used = 0
        for i, (task, config, value) in enumerate(zip(table.column("task").to_pylist(),
                                                      table.column("config").to_pylist(),
                                                      table.column("val_accuracy").to_pylist(), strict=True)):
            if (statuses is not None and statuses[i] != "ok") or value is None or not math.isfinite(value):
                continue
            try:
                actions = tuple(space.encode(json.loads(config)))
            except (SearchSpaceError, ValueError, TypeError):
                continue  # a configuration of another space
            sums.setdefault(str(task), {}).setdefault(actions, []).append(float(value))
            used += 1
        if not used:
            raise ConfigError(f"method_options.sources: {location} holds no finished trial in space {space.name!r}")
    return {task: {"actions": [list(a) for a in seen], "values": [float(np.mean(v)) for v in seen.values()]}
            for task, seen in sorted(sums.items())}


# -- the search -----------------------------------------------------------------------------


@register_search("rank-ensemble")
class RankEnsembleSearch(Search):
    """Source surrogates and a target surrogate, weighted by ranking loss on the target's results."""

    def __init__(self, space: SearchSpace, tasks: list[str], search_id: str, seed: int = 0,
                 sources: str = "", source_ridge: float = 1.0, target_ridge: float = 2.0,
                 bootstrap: int = 64, warmup: int = 2, max_candidates: int = 20_000):
        super().__init__(space, tasks, search_id, seed)
        if not isinstance(sources, str):
            raise ConfigError(f"sources must be comma-separated locations, got {sources!r}")
        for name, value in (("source_ridge", source_ridge), ("target_ridge", target_ridge)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
                raise ConfigError(f"{name} must be a number > 0, got {value!r}")
        for name, value, low in (("bootstrap", bootstrap, 1), ("warmup", warmup, 0), ("max_candidates", max_candidates, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        self.sources = sources
        self.source_ridge, self.target_ridge = float(source_ridge), float(target_ridge)
        self.bootstrap, self.warmup, self.max_candidates = bootstrap, warmup, max_candidates
        self.source_data: dict[str, dict[str, list]] | None = None  # read at the first ask
        self.history = [{"actions": [], "rewards": []} for _ in self.tasks]  # per task, in order
        self._fits: dict[str, tuple[np.ndarray, np.ndarray]] | None = None  # task -> (X_s, alpha_s)
        self._enumerated: np.ndarray | None = None  # the whole space, when it is small enough
        self._cache: tuple[np.ndarray, np.ndarray] | None = None  # (candidates, source predictions)

    # -- sources --------------------------------------------------------------------------

    def _source_fits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if self.source_data is None:
            self.source_data = read_sources(self.sources, self.space) if self.sources else {}
        if self._fits is None:
            self._fits = {}
            for task, data in self.source_data.items():
                xs = np.asarray(data["actions"], dtype=np.int64).reshape(-1, len(self.space))
                if len(xs) < 2:
                    continue  # one value has no ranks
                z = copula_values(np.asarray(data["values"]))
                self._fits[task] = (xs, kernel_ridge(pair_kernel(matches(xs, xs)), z, self.source_ridge))
        return self._fits

    def _candidates(self, fits) -> np.ndarray:
        """[C, D] configurations to score."""
        cards = self.space.cardinalities
        if math.prod(cards) <= self.max_candidates:
            if self._enumerated is None:
                self._enumerated = np.array(list(itertools.product(*[range(c) for c in cards])),
                                            dtype=np.int64).reshape(-1, len(cards))
            return self._enumerated
        pool = [np.asarray(uniform_actions(cards, self.max_candidates, self.generator), dtype=np.int64)]
        pool += [xs for xs, _ in fits.values()]
        pool += [np.asarray(h["actions"], dtype=np.int64).reshape(-1, len(cards)) for h in self.history]
        return np.unique(np.concatenate(pool), axis=0)

    # -- proposing ------------------------------------------------------------------------

    def _propose(self, task_indices: list[int]) -> list[list[int]]:
        fits = self._source_fits()
        cands = self._candidates(fits) if (fits or any(len(h["rewards"]) >= TARGET_MIN for h in self.history)) else None
        source_preds = None
        if cands is not None and fits:
            if self._cache is not None and self._cache[0] is cands:
                source_preds = self._cache[1]
            else:
                source_preds = np.stack([standardized(pair_kernel(matches(cands, xs)) @ alpha)
                                         for xs, alpha in fits.values()])  # [S, C]
                self._cache = (cands, source_preds) if self._enumerated is cands else None
        proposals: list[list[int]] = []
        for t in task_indices:
            taken = [tuple(a) for a in self.history[t]["actions"]]
            taken += [tuple(p) for p, tt in zip(proposals, task_indices, strict=False) if tt == t]
            score = None if cands is None else self._score(t, cands, fits, source_preds)
            if score is None:
                proposals.append(uniform_actions(self.space.cardinalities, 1, self.generator)[0])
                continue
            if taken:
                seen = np.zeros(len(cands), dtype=bool)
                lookup = {tuple(c): i for i, c in enumerate(cands.tolist())}
                for a in taken:
                    if a in lookup:
                        seen[lookup[a]] = True
                if seen.all():  # every candidate evaluated: fall back to a uniform draw
                    proposals.append(uniform_actions(self.space.cardinalities, 1, self.generator)[0])
                    continue
                score = np.where(seen, -np.inf, score)
            proposals.append([int(a) for a in cands[int(np.argmax(score))]])
        return proposals

    def weights(self, t: int, fits=None) -> dict[str, float]:
        """The models' RGPE weights for task index t ({source task: w, "<target>": w_t}): what
        the next proposal for that task uses. Draws bootstrap samples from the generator."""
        fits = self._source_fits() if fits is None else fits
        xo = np.asarray(self.history[t]["actions"], dtype=np.int64).reshape(-1, len(self.space))
        yo = np.asarray(self.history[t]["rewards"], dtype=np.float64)
        n = len(yo)
        names = list(fits)
        if n < max(self.warmup, 1) or (not names and n < TARGET_MIN):
            return dict.fromkeys(names, 1.0 / len(names)) if names else {}
        preds = [pair_kernel(matches(xo, xs)) @ alpha for xs, alpha in fits.values()]  # each [n]
        if n >= TARGET_MIN:
            z = copula_values(yo)
            preds.append(loo_predictions(main_kernel(matches(xo, xo)), z, self.target_ridge))
            names.append("<target>")
        if len(preds) == 1:
            return {names[0]: 1.0}
        samples = torch.randint(n, (self.bootstrap, n), generator=self.generator)  # [B, n]
        return dict(zip(names, bootstrap_weights(np.stack(preds), yo, samples).tolist(), strict=True))

    def _score(self, t: int, cands: np.ndarray, fits, source_preds: np.ndarray | None) -> np.ndarray | None:
        w = self.weights(t, fits)
        if not w:
            return None
        score = np.zeros(len(cands))
        if source_preds is not None:
            score += np.asarray([w[name] for name in fits]) @ source_preds
        if w.get("<target>", 0.0) > 0:
            xo = np.asarray(self.history[t]["actions"], dtype=np.int64).reshape(-1, len(self.space))
            z = copula_values(np.asarray(self.history[t]["rewards"]))
            alpha = kernel_ridge(main_kernel(matches(xo, xo)), z, self.target_ridge)
            score += w["<target>"] * standardized(main_kernel(matches(cands, xo)) @ alpha)
        return score

    # -- learning -------------------------------------------------------------------------

    def _learn(self, trials: list[Trial], rewards: list[float]) -> dict[str, float]:
        for trial, reward in zip(trials, rewards, strict=True):
            self.history[trial.task_index]["actions"].append([int(a) for a in trial.actions])
            self.history[trial.task_index]["rewards"].append(float(reward))
        metrics = {f"controller/told/{task}": float(len(h["rewards"])) for task, h in zip(self.tasks, self.history, strict=True)}
        metrics["controller/sources"] = float(len(self.source_data or {}))
        return metrics

    # -- state ----------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {"sources": self.sources, "source_ridge": self.source_ridge, "target_ridge": self.target_ridge,
                "bootstrap": self.bootstrap, "warmup": self.warmup, "max_candidates": self.max_candidates}

    def state_dict(self) -> dict[str, Any]:
        self._source_fits()  # a checkpoint holds the sources as read, never only their location
        return {**super().state_dict(), "settings": self.settings(), "source_data": self.source_data,
                "history": [{"actions": [list(a) for a in h["actions"]], "rewards": list(h["rewards"])}
                            for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_header(self, state, self.settings())
        super().load_state_dict(state)
        self.source_data = {str(task): {"actions": [[int(a) for a in row] for row in d["actions"]],
                                        "values": [float(v) for v in d["values"]]}
                            for task, d in dict(state["source_data"]).items()}
        self.history = [{"actions": [[int(a) for a in row] for row in h["actions"]],
                         "rewards": [float(r) for r in h["rewards"]]} for h in state["history"]]
        self._fits = None

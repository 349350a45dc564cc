"""Variants of `rank-ensemble` tried against the issue-14 goal, in a fast loop (not product code).

The loop drives `RankEnsembleSearch` and subclasses of it directly through `ask`/`tell` on a table,
with the transfer benchmark's own source draws (`benchmarks.transfer_search.draw_sources`, 200
random evaluations per other task) and counts trials until the held-out task's top 1 %; it skips
the `Study` (no ledger, no tracker), so a variant on 7 tasks x 8 seeds takes one to two minutes
of one core. docs/benchmarks/transfer_search.md ("What was tried this round") reports its figures:

    PYTHONPATH=src python -m benchmarks.rank_ensemble_variants --variant hedge --seeds 0-7
    PYTHONPATH=src python -m benchmarks.rank_ensemble_variants --variant dilution --seeds 0-7 --shuffle-sources --cap 60

None of these variants is kept: each trades one task for another (the doc has the numbers).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import torch

from transfer_automl.search.rank_ensemble import (
    TARGET_MIN,
    RankEnsembleSearch,
    copula_values,
    kernel_ridge,
    loo_predictions,
    main_kernel,
    matches,
    misranked_pairs,
    pair_kernel,
    standardized,
)


def _onehot(x: np.ndarray, cards: list[int]) -> np.ndarray:
    """[n, D] choice indices -> [n, 1 + sum(cards)]: a constant and one-hot main effects."""
    cols = [np.ones((len(x), 1))]
    cols += [(x[:, d, None] == np.arange(c)[None, :]).astype(float) for d, c in enumerate(cards)]
    return np.concatenate(cols, 1)


def _target_xz(search: RankEnsembleSearch, t: int) -> tuple[np.ndarray, np.ndarray]:
    h = search.history[t]
    return np.asarray(h["actions"], dtype=np.int64).reshape(-1, len(search.space)), np.asarray(h["rewards"], dtype=np.float64)


class SharedLinear(RankEnsembleSearch):
    """Inferred task embedding: Bayesian linear regression of the target's copula values on
    phi(x) = [standardized source surrogates, one-hot main effects], prior mean equal source weights.
    `grid`: the prior and noise variances by marginal likelihood over 27 points."""

    tau2, main2, noise2, grid = 0.5, 1.0, 0.1, False

    def _score(self, t, cands, fits, source_preds):
        xo, yo = _target_xz(self, t)
        cards = self.space.cardinalities
        fc = np.zeros((len(cands), 0)) if source_preds is None else source_preds.T  # [C, S]
        s = fc.shape[1]
        phi = np.concatenate([fc, _onehot(cands, cards) / math.sqrt(1 + len(cards))], 1)  # [C, P]
        mu0 = np.zeros(phi.shape[1])
        mu0[:s] = 1.0 / max(s, 1)
        if len(yo) == 0:
            return phi @ mu0
        lookup = {tuple(c): i for i, c in enumerate(cands.tolist())}
        po = phi[[lookup[tuple(a)] for a in xo.tolist()]]
        z = copula_values(yo) if len(yo) > 1 else np.zeros(1)
        grid = ([(a, b, c) for a in (0.1, 0.5, 2.0) for b in (0.3, 1.0, 3.0) for c in (0.03, 0.1, 0.3)]
                if self.grid else [(self.tau2, self.main2, self.noise2)])
        best = None
        for tau2, main2, noise2 in grid:
            lam0 = np.concatenate([np.full(s, tau2), np.full(phi.shape[1] - s, main2)])
            chol = np.linalg.cholesky((po * lam0) @ po.T + noise2 * np.eye(len(z)))
            a = np.linalg.solve(chol, z - po @ mu0)
            loglik = -0.5 * a @ a - np.log(np.diag(chol)).sum()
            if best is None or loglik > best[0]:
                best = (loglik, lam0, noise2)
        _, lam0, noise2 = best
        a_inv = np.linalg.inv(po.T @ po / noise2 + np.diag(1 / lam0))
        return phi @ (a_inv @ (po.T @ z / noise2 + mu0 / lam0))


class _AllModels(RankEnsembleSearch):
    """Helpers: every model's standardized predictions over the candidates, and their weights."""

    def _rows(self, t, cands, source_preds, w):
        rows = list(source_preds) if source_preds is not None else []
        if "<target>" in w:
            xo, yo = _target_xz(self, t)
            alpha = kernel_ridge(main_kernel(matches(xo, xo)), copula_values(yo), self.target_ridge)
            rows.append(standardized(main_kernel(matches(cands, xo)) @ alpha))
        return np.stack(rows)  # [M, C]

    def _weighted_rows(self, t, cands, fits, source_preds):
        """(normalized RGPE weights [M], the models' standardized predictions [M, C]), or None
        before any model has a weight."""
        w = self.weights(t, fits)
        if not w:
            return None
        p = np.asarray(list(w.values()))
        return p / p.sum(), self._rows(t, cands, source_preds, w)


class ThompsonModels(_AllModels):
    """One model per trial, drawn with its RGPE weight; plus `mix` x the weighted mean."""

    mix = 1.0

    def _score(self, t, cands, fits, source_preds):
        if (weighted := self._weighted_rows(t, cands, fits, source_preds)) is None:
            return None
        p, rows = weighted
        k = int(torch.multinomial(torch.tensor(p), 1, generator=self.generator))
        return rows[k] + self.mix * (p @ rows)


class Disagreement(_AllModels):
    """Explicit exploration: weighted mean + kappa x spread of the plausible (weight > 0) models."""

    kappa = 0.5

    def _score(self, t, cands, fits, source_preds):
        if (weighted := self._weighted_rows(t, cands, fits, source_preds)) is None:
            return None
        p, rows = weighted
        return p @ rows + self.kappa * rows[p > 0].std(0)


class Hedge(RankEnsembleSearch):
    """Every `every`-th trial a Thompson draw of the quantile peer's model: one kernel ridge on all
    sources' copula values pooled, a GP (exp-Hamming kernel) on the target's residuals about it."""

    every = 2

    def _score(self, t, cands, fits, source_preds):
        xo, yo = _target_xz(self, t)
        if not fits or len(yo) % self.every != self.every - 1:
            return super()._score(t, cands, fits, source_preds)
        if getattr(self, "_pool", None) is None or self._pool[0] is not cands:
            xs = np.concatenate([x for x, _ in fits.values()])
            zs = np.concatenate([copula_values(np.asarray(d["values"])) for d in self.source_data.values()
                                 if len(d["values"]) >= 2])
            k = pair_kernel(matches(xs, xs))
            alpha = kernel_ridge(k, zs, 1.0)
            self._pool = (cands, pair_kernel(matches(cands, xs)) @ alpha, float(np.mean((zs - k @ alpha) ** 2)))
        _, mu, s2 = self._pool
        d = xo.shape[1]
        lookup = {tuple(c): i for i, c in enumerate(cands.tolist())}
        res = copula_values(yo) - mu[[lookup[tuple(a)] for a in xo.tolist()]]
        chol = np.linalg.cholesky(s2 * np.exp(-(d - matches(xo, xo))) + 1e-2 * s2 * np.eye(len(yo)))
        kxo = s2 * np.exp(-(d - matches(cands, xo)))
        mean = mu + kxo @ np.linalg.solve(chol.T, np.linalg.solve(chol, res))
        v = np.linalg.solve(chol, kxo.T)
        sd = np.sqrt(np.maximum(s2 - (v * v).sum(0), 1e-12))
        return mean + sd * torch.randn(len(cands), generator=self.generator, dtype=torch.float64).numpy()


class NoisyArgmax(RankEnsembleSearch):
    """The ensemble's score plus c x N(0, 1) per candidate."""

    c = 0.3

    def _score(self, t, cands, fits, source_preds):
        score = super()._score(t, cands, fits, source_preds)
        if score is None:
            return None
        return score + self.c * torch.randn(len(cands), generator=self.generator, dtype=torch.float64).numpy()


class PriorityQueue(RankEnsembleSearch):
    """While the target model weighs < 0.5, propose only among each source's `q` best evaluated
    configurations, ranked by the ensemble's score."""

    q = 10

    def _score(self, t, cands, fits, source_preds):
        score = super()._score(t, cands, fits, source_preds)
        if score is None or not self.source_data or self.weights(t, fits).get("<target>", 0.0) >= 0.5:
            return score
        if getattr(self, "_queue", None) is None or self._queue[0] is not cands:
            lookup = {tuple(c): i for i, c in enumerate(cands.tolist())}
            mask = np.zeros(len(cands), dtype=bool)
            for data in self.source_data.values():
                for i in np.argsort(-np.asarray(data["values"]), kind="stable")[: self.q]:
                    j = lookup.get(tuple(data["actions"][i]))
                    if j is not None:
                        mask[j] = True
            self._queue = (cands, mask)
        return np.where(self._queue[1], score, score - 1e6)


class DilutionGuard(RankEnsembleSearch):
    """RGPE's weight-dilution prevention (Feurer et al. 2018): a source whose median bootstrap loss
    exceeds the target model's `pct`-th percentile loss takes no part in the weights."""

    pct = 95.0

    def weights(self, t, fits=None):
        fits = self._source_fits() if fits is None else fits
        xo, yo = _target_xz(self, t)
        n, names = len(yo), list(fits)
        if n < max(self.warmup, 1) or (not names and n < TARGET_MIN):
            return dict.fromkeys(names, 1.0 / len(names)) if names else {}
        preds = [pair_kernel(matches(xo, xs)) @ alpha for xs, alpha in fits.values()]
        if n >= TARGET_MIN:
            preds.append(loo_predictions(main_kernel(matches(xo, xo)), copula_values(yo), self.target_ridge))
            names.append("<target>")
        if len(preds) == 1:
            return {names[0]: 1.0}
        samples = torch.randint(n, (self.bootstrap, n), generator=self.generator).numpy()
        losses = np.array([[misranked_pairs(p[idx], yo[idx]) for idx in samples] for p in preds])  # [M, B]
        keep = np.ones(len(preds), dtype=bool)
        if names[-1] == "<target>":
            keep[:-1] = np.median(losses[:-1], axis=1) <= np.percentile(losses[-1], self.pct)
        wins = np.zeros(len(preds))
        for b in range(losses.shape[1]):
            col = np.where(keep, losses[:, b], np.inf)
            best = np.flatnonzero(col == col.min())
            wins[best] += 1.0 / len(best)
        return dict(zip(names, (wins / losses.shape[1]).tolist(), strict=True))


VARIANTS: dict[str, tuple[type[RankEnsembleSearch], dict[str, Any]]] = {
    "current": (RankEnsembleSearch, {}),
    "shared-linear": (SharedLinear, {}),
    "shared-linear-ml": (SharedLinear, {"grid": True}),
    "thompson-models": (ThompsonModels, {}),
    "disagreement": (Disagreement, {}),
    "hedge": (Hedge, {}),
    "noisy-argmax": (NoisyArgmax, {}),
    "queue10": (PriorityQueue, {"q": 10}),
    "queue5": (PriorityQueue, {"q": 5}),
    "dilution": (DilutionGuard, {}),
}


def trials_to_top(variant: str, bench, task: str, seed: int, cap: int, shuffled: bool = False) -> float:
    """Trials until `variant` evaluates a configuration of `task`'s top 1 % (inf past `cap`)."""
    from benchmarks.transfer_search import draw_sources, top_threshold

    cls, attrs = VARIANTS[variant]
    search = cls(bench.space, [task], f"{variant}-{task}-{seed}", seed, sources="(set below)")
    for name, value in attrs.items():
        setattr(search, name, value)
    search.source_data = {s: {"actions": bench.row_actions[rows].tolist(), "values": values.tolist()}
                          for s, (rows, values) in draw_sources(bench, task, seed, 200, shuffled).items()}
    threshold, values = top_threshold(bench, task, 0.01), bench.all_values(task)
    for i in range(cap):
        trials = search.ask(1)
        value = float(values[bench.row(trials[0].actions)])
        search.tell(trials, [value])
        if value >= threshold:
            return float(i + 1)
    return math.inf


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    p.add_argument("--benchmark", default="transnasbench101-micro")
    p.add_argument("--seeds", default="0-7", help="first-last, inclusive")
    p.add_argument("--tasks", default="", help="held-out tasks (default: all)")
    p.add_argument("--cap", type=int, default=40, help="trials per search at most")
    p.add_argument("--shuffle-sources", action="store_true")
    p.add_argument("--data-dir")
    a = p.parse_args(argv)
    from benchmarks.studies import named_backend

    torch.set_num_threads(1)
    first, last = (int(x) for x in a.seeds.split("-"))
    bench = named_backend(a.benchmark, a.data_dir).trainer.benchmark
    started = time.perf_counter()
    for task in [t for t in a.tasks.split(",") if t] or bench.tasks:
        hits = [trials_to_top(a.variant, bench, task, seed, a.cap, a.shuffle_sources) for seed in range(first, last + 1)]
        print(f"{task:24s} median {np.median(hits):5.1f}  per seed {[h if math.isfinite(h) else None for h in hits]}",
              flush=True)
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Warm start of a new task from the closest pretrained task (`taml transfer`).

Three pieces, each usable on its own:

* `select_sources(target, source_tasks, ...)`: rank a pretrained search's tasks by a registered
  task distance to the new task. With `fisher_ld`, only the column d[source, target] is computed:
  one probe per task and repeat, and the Fisher of every probe on the TARGET's data only (the
  same seeds as `FisherLogDet.matrix`, so the column equals that matrix's last column).
  `closest` is argmin_b d[b, target]; `all` every source, closest first; a task name that task.
* `warm_start(body, target, sources, embedding=...)`: `ControllerSearch.transfer_from` onto
  [target] (shared weights copied, uniform mixing at the start), then the target's task-embedding
  row set to the closest source's row (`closest`), to the mean of the selected sources' rows
  (`mean`), or left at its random initialization (`random`, as Transfer AutoML and Transfer NAS do).
* `reduce_space(space, ledger_rows, source_task, top_k)`: the seed paper's "the architecture of
  the closest task defines the search space": the decisions and choices that the source task's
  top-k configurations (by validation accuracy, status ok) use. Every decision that can still be
  active is kept, its choices restricted to the observed ones in the original order. A
  conditional decision that none of the top-k configurations activated could never be active in
  the reduced space (its condition's parent values are gone) and is left out.

A reduced space has other cardinalities than the pretrained controller's, so a controller cannot
be transferred onto it: it is for a FRESH search (any method). `taml transfer` and the
`transfer_init` pipeline step (steps/transfer_steps.py) put these pieces together.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transfer_automl.errors import CheckpointError, ConfigError, TaskError
from transfer_automl.space import Condition, Decision, SearchSpace
from transfer_automl.space.decisions import canonical_value
from transfer_automl.trial_status import STATUS_OK

SELECTIONS = ("closest", "all")  # or one source task's name
EMBEDDINGS = ("closest", "random", "mean")
TASK_EMBEDDING_SUFFIX = "task_embeddings.weight"  # LSTM: the key itself; transformer: ends with it


# -- source selection ----------------------------------------------------------------------------


def select_sources(target: str, source_tasks: Sequence[str], distance: Any = "fisher_ld", select: str = "closest",
                   repeats: int = 3, data_dir: str | Path | None = None, seed: int = 0,
                   modality: str = "text") -> list[tuple[str, float]]:
    """[(source task, d[source, target])], closest first: one pair for `closest` or a task name,
    every source for `all`. `distance`: a registered name or a TaskDistance; `modality` of the
    probe tasks (`taml search` searches text tasks; "auto" as in `taml distance`)."""
    sources = list(source_tasks)
    if not sources:
        raise ConfigError("the pretrained search has no tasks to transfer from")
    if target in sources:
        raise ConfigError(f"target {target!r} is already a task of the pretrained search {sources}; "
                          "continue it with taml search --init-from transfer instead")
    if select not in SELECTIONS and select not in sources:
        raise TaskError(f"--select {select!r} is not closest, all or a task of the pretrained search {sources}")
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    candidates = sources if select in SELECTIONS else [select]
    values = distance_to_target(distance, candidates, target, repeats=repeats, data_dir=data_dir, seed=seed,
                                modality=modality)
    ranked = sorted(zip(candidates, (float(v) for v in values), strict=True), key=lambda pair: pair[1])
    return choose_sources(ranked, select)


def choose_sources(ranking: Sequence[tuple[str, float]], select: str) -> list[tuple[str, float]]:
    """The pairs of `ranking` (closest first) that `select` chooses: the first for `closest`, all
    for `all`, the named task's pair otherwise."""
    if select == "closest":
        return list(ranking[:1])
    if select == "all":
        return list(ranking)
    chosen = [pair for pair in ranking if pair[0] == select]
    if not chosen:
        raise TaskError(f"--select {select!r} is not closest, all or one of the ranked tasks {[t for t, _ in ranking]}")
    return chosen


def distance_to_target(distance: Any, sources: Sequence[str], target: str, repeats: int = 3,
                       data_dir: str | Path | None = None, seed: int = 0, modality: str = "text") -> list[float]:
    """d[source, target] for each source, in the order given."""
    from transfer_automl.transfer.distances import FisherLogDet, TaskDistance, get_distance
    from transfer_automl.transfer.fisher import load_probe_tasks

    if isinstance(distance, str):
        try:
            distance = get_distance(distance)
        except TypeError:  # a distance that needs settings (embedding_cosine: a checkpoint)
            raise ConfigError(f"task distance {distance!r} cannot rank a new task (it needs settings); "
                              "use fisher_ld") from None
    if not isinstance(distance, TaskDistance):
        raise ConfigError(f"distance must be a registered name or a TaskDistance, got {type(distance).__name__}")
    fisher_samples = distance.config.fisher_samples if isinstance(distance, FisherLogDet) else 500
    probes = load_probe_tasks([*sources, target], modality=modality, data_dir=data_dir, fisher_samples=fisher_samples)
    if isinstance(distance, FisherLogDet):
        return list(fisher_column(distance, probes, repeats=repeats, seed=seed))
    return list(distance.matrix(probes, repeats=repeats, seed=seed).mean[:-1, -1])


def fisher_column(distance, probes: Sequence, repeats: int = 3, seed: int = 0) -> np.ndarray:
    """d[b, t] for every probe task b but the last, t the last: `FisherLogDet.matrix(probes)`'s
    last column without the Fishers on the other tasks' data (same probe and Fisher seeds)."""
    from transfer_automl.transfer.distances import fisher_ld
    from transfer_automl.transfer.fisher import probe_fisher, train_probe

    dims = {p.input_dim for p in probes}
    if len(dims) != 1:
        raise TaskError(f"tasks have different probe input sizes {sorted(dims)}: " +
                        ", ".join(f"{p.name}={p.input_dim}" for p in probes))
    head = max(p.num_classes for p in probes)
    target = probes[-1]
    d = np.zeros((repeats, len(probes) - 1))  # [R, K-1]
    for r in range(repeats):
        nets = [train_probe(p, seed + r * 1000 + i, distance.config, head_width=head) for i, p in enumerate(probes)]
        fishers = [probe_fisher(net, target, distance.config, seed=seed + r) for net in nets]  # F_{b,t}
        for i in range(len(probes) - 1):
            d[r, i] = fisher_ld(fishers[i], fishers[-1], distance.sigma)
    return d.mean(axis=0)


# -- embedding warm start --------------------------------------------------------------------------


def warm_start(body: dict[str, Any], target: str, sources: Sequence[str | tuple[str, float]],
               embedding: str = "closest", seed: int = 0, mixing_gamma: float = 0.1, mixing_samples: int = 100,
               search_id: str | None = None, update_config: dict[str, Any] | None = None):
    """A controller search for [target] from the pretrained checkpoint `body`; `sources` closest
    first (as `select_sources` returns them). The target's embedding row becomes the closest
    source's row, the mean of the sources' rows, or stays random."""
    names = [s if isinstance(s, str) else s[0] for s in sources]
    return warm_start_tasks(body, [target], {target: names}, embedding, seed, mixing_gamma, mixing_samples,
                            search_id or f"{target}-warm-start", update_config)


def warm_start_tasks(body: dict[str, Any], tasks: Sequence[str], sources: dict[str, Sequence[str]],
                     embedding: str = "random", seed: int = 0, mixing_gamma: float = 0.1, mixing_samples: int = 100,
                     search_id: str = "warm-start", update_config: dict[str, Any] | None = None):
    """A controller search for `tasks` from the pretrained checkpoint `body`
    (`ControllerSearch.transfer_from`: shared weights, a task the checkpoint knows keeps its
    embedding, uniform mixing at the start). With embedding closest or mean, a task's embedding
    row becomes its first source's row or its sources' mean (`sources[task]`, closest first)."""
    from transfer_automl.search import ControllerSearch

    if embedding not in EMBEDDINGS:
        raise ConfigError(f"embedding must be one of {list(EMBEDDINGS)}, got {embedding!r}")
    if not isinstance(body.get("controller_state"), dict):
        raise CheckpointError(f"the pretrained search is a {body.get('name')!r} search, which has no controller "
                              "to warm-start; use --reduce-space for a fresh search")
    old_tasks = [str(t) for t in body["tasks"]]
    unknown = sorted({n for t in tasks for n in sources.get(t, ())} - set(old_tasks))
    if unknown:
        raise TaskError(f"source task(s) {unknown} are not tasks of the pretrained search {old_tasks}")
    search = ControllerSearch.transfer_from(body, list(tasks), search_id, seed=seed, mixing_gamma=mixing_gamma,
                                            mixing_samples=mixing_samples,
                                            update_config=update_config or dict(body["update_config"]))
    if embedding == "random":
        return search
    table = body["controller_state"][task_embedding_key(body["controller_state"])]  # [num_old_tasks, E]
    for i, task in enumerate(tasks):
        names = list(sources.get(task, ()))
        if not names:
            raise ConfigError(f"embedding {embedding!r} needs at least one source task for {task!r}")
        rows = table[[old_tasks.index(n) for n in names]]  # [S, E], closest first
        set_task_embedding(search.controller, i, rows[0] if embedding == "closest" else rows.mean(dim=0))
    return search


def task_embedding_key(state: dict[str, Any]) -> str:
    keys = [k for k in state if k.endswith(TASK_EMBEDDING_SUFFIX)]
    if len(keys) != 1:
        raise CheckpointError(f"expected one '*{TASK_EMBEDDING_SUFFIX}' controller parameter, found {keys}")
    return keys[0]


def set_task_embedding(controller, task_index: int, row) -> None:
    """Overwrite one task's embedding row in place (the optimizer keeps the same parameter)."""
    import torch

    params = dict(controller.named_parameters())
    weight = params[task_embedding_key(params)]
    if tuple(row.shape) != tuple(weight.shape[1:]):
        raise CheckpointError(f"task embedding of size {list(row.shape)} does not fit {list(weight.shape[1:])}")
    with torch.no_grad():
        weight[task_index] = row.to(weight.dtype)


# -- search-space reduction ------------------------------------------------------------------------


def reduce_space(space: SearchSpace, ledger_rows: Sequence[dict[str, Any]], source_task: str,
                 top_k: int = 10) -> SearchSpace:
    """The choices the source task's top-k ok trials (by val_accuracy) use, in the space's order."""
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    rows = [r for r in ledger_rows if r.get("task") == source_task and r.get("status") == STATUS_OK
            and r.get("val_accuracy") is not None and math.isfinite(r["val_accuracy"])]
    if not rows:
        raise ConfigError(f"the ledger has no successful (status ok) trials of task {source_task!r}; "
                          "cannot reduce the search space to its configurations")
    top = sorted(rows, key=lambda r: -r["val_accuracy"])[:top_k]  # stable: ledger order on ties
    used: dict[str, set[int]] = {}
    for r in top:
        config = json.loads(r["config"]) if isinstance(r["config"], str) else dict(r["config"])
        try:
            indices = space.encode(config)
        except ValueError as exc:
            raise ConfigError(f"ledger trial {r.get('trial_id')!r} does not fit space {space.name!r}: {exc}") from None
        for d, i in zip(space.decisions, indices, strict=True):
            if i >= 0:
                used.setdefault(d.name, set()).add(i)
    kept: dict[str, Decision] = {}
    for d in space.decisions:
        if d.name not in used:  # a conditional decision no top config activated: unreachable now
            continue
        condition = d.condition
        if condition is not None:
            parent = {canonical_value(c) for c in kept[condition.parent].choices}  # active => parent kept
            condition = Condition(condition.parent, tuple(v for v in condition.values if canonical_value(v) in parent))
        choices = tuple(d.choices[i] for i in sorted(used[d.name]))
        kept[d.name] = Decision(d.name, choices, d.description, condition)
    return SearchSpace(f"{space.name}-reduced-{source_task}", tuple(kept.values()))

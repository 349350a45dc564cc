"""What the harnesses share: in-memory `Study`s on a benchmark table, driven round by round.

Every search a harness runs is a `transfer_automl.study.Study` (`Study.in_memory`: no files, no
tracker) with `SearchSettings` as `taml search` and the pipelines take them, driven by the same
four calls (`pending_rounds`, `ask_round`, `run_trial`, `tell_round`). A table's backend (its
space, tasks and `TableChildTrainer`) is built once per process and each study sees the tasks, and
where it searches a reduced space that space, it searches (`on_tasks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from transfer_automl.errors import ConfigError
from transfer_automl.search import LedgerRow, Trial
from transfer_automl.space import SearchSpace
from transfer_automl.study import Study
from transfer_automl.study.backends import Backend, Reference, table_backend

# A study its harness stops itself (`until`) asks for the most trials a search may have: the
# harness's condition, not this number, ends it.
OPEN_ENDED = 10_000_000

_BACKENDS: dict[tuple[str, str | None], Backend] = {}  # named tables, loaded once per process


@dataclass
class Done:
    """One trial a study ran: what was asked and its ledger row."""

    trial: Trial
    row: LedgerRow


def named_backend(name: str, data_dir: str | None = None) -> Backend:
    """The backend `taml search --benchmark <name>` builds (every task of the table), once per process."""
    key = (name, data_dir)
    if key not in _BACKENDS:
        _BACKENDS[key] = table_backend((), name, None, (), None, data_dir)
    return _BACKENDS[key]


def backend_of(bench: Any) -> Backend:
    """A `TableBenchmark` built in a harness (no name to load it by) as a backend, as
    `study.backends.table_backend` makes one for a named table."""
    import numpy as np

    from transfer_automl.children.table import TableChildTrainer

    references = {}
    for task in bench.tasks:
        test = float(np.median(bench.test_metric[task])) if bench.has_test(task) else bench.median_value(task)
        references[task] = Reference("median cell", bench.median_value(task), test)
    return Backend(space=bench.space, task_names=list(bench.tasks), trainer=TableChildTrainer(bench),
                   task_objects={t: t for t in bench.tasks}, references=references,
                   data_location=bench.source or bench.name)


def on_tasks(backend: Backend, tasks: Sequence[str], space: SearchSpace | None = None) -> Backend:
    """The same table and trainer, searched over `tasks` (in this order) and in `space` (default:
    the table's; a reduced space must hold configurations of the table)."""
    unknown = [t for t in tasks if t not in backend.task_objects]
    if unknown:
        raise ConfigError(f"tasks: {unknown} are not tasks of {backend.data_location} ({backend.task_names})")
    return replace(backend, space=space or backend.space, task_names=list(tasks),
                   task_objects={t: backend.task_objects[t] for t in tasks},
                   references={t: backend.references[t] for t in tasks})


def run_study(settings: Mapping[str, Any], backend: Backend, *, source: Study | None = None,
              until: Callable[[list[Done]], bool] | None = None) -> tuple[Study, list[Done]]:
    """Run an in-memory study to its last round, or until `until(done so far)` holds after a round.

    `settings` are `SearchSettings` fields (the tasks are the backend's); `source` is the
    pretrained study that init_from=transfer starts from."""
    study = Study.in_memory({"tasks": tuple(backend.task_names), "progress": False, **settings},
                            backend=backend, source=source)
    done: list[Done] = []
    for step in study.pending_rounds():
        trials = study.ask_round(step)
        rows = [study.run_trial(t) for t in trials]
        study.tell_round(step, rows)
        done += [Done(t, r) for t, r in zip(trials, rows, strict=True)]
        if until is not None and until(done):
            return study, done
    if until is not None:
        raise ConfigError(f"search {study.search.search_id}: its stopping condition did not hold after "
                          f"{len(done)} trials")
    return study, done


def each_task_has(n: int, tasks: Iterable[str]) -> Callable[[list[Done]], bool]:
    """`until`: every one of `tasks` has had at least `n` trials (tasks are drawn at random)."""
    wanted = list(tasks)

    def enough(done: list[Done]) -> bool:
        counts = dict.fromkeys(wanted, 0)
        for d in done:
            if d.row.task in counts:
                counts[d.row.task] += 1
        return min(counts.values()) >= n

    return enough


def best_so_far(done: Iterable[Done], task: str, n: int | None = None) -> list[float]:
    """The best validation value on `task` after each of its first `n` trials (other tasks' are skipped)."""
    best, curve = -math.inf, []
    for d in done:
        if d.row.task == task and (n is None or len(curve) < n):
            best = max(best, d.row.val_accuracy)
            curve.append(best)
    return curve

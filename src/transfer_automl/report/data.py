"""What a report shows, read from a search directory: ledger rows, checkpoint, distance matrix.

Every read goes through the project's own readers (`Ledger`, `load_checkpoint`, `get_store`), so a
search directory that lives on an artifact store reads the same way as a local one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transfer_automl.errors import StorageError, TamlError
from transfer_automl.rewards import accuracy_top_n
from transfer_automl.rewards.summary import TaskSummary, summarize
from transfer_automl.trial_status import STATUS_OK

CHECKPOINT_NAME = "checkpoint.pt"
LEDGER_DIR = "ledger"
DISTANCE_NAME = "distance.parquet"
SPACE_NAME = "space.yaml"
SETTINGS_NAME = "settings.json"
INPUT_MODULE = "input_module"


class ReportError(TamlError, ValueError):
    """A search directory cannot be reported on (missing, empty, or holding foreign files)."""


@dataclass
class Reference:
    """The figure each task's results are set beside (majority class for text, median cell for tables)."""

    name: str
    val: float
    test: float
    source: str = ""  # where the figure was computed from (data directory or benchmark table)


@dataclass
class SearchData:
    location: str  # the search directory (a path or a store uri)
    search_id: str
    method: str  # "unknown" when the directory has no checkpoint
    tasks: list[str]
    rows: list[dict[str, Any]]  # ledger rows in controller-step order
    top_n: int = 10
    decisions: list[tuple[str, list[str]]] = field(default_factory=list)  # (name, choice labels), space order
    checkpoint: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the checkpoint's search_settings
    distance: list[dict[str, Any]] | None = None  # rows source, target, mean, std
    references: dict[str, Reference] = field(default_factory=dict)
    checkpoint_problem: str | None = None  # why a checkpoint that exists could not be read
    data_record: dict[str, Any] = field(default_factory=dict)  # settings.json `_data`: what the search read
    data_note: str | None = None  # why the references may not be the search's own data

    def task_rows(self, task: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["task"] == task]

    def summaries(self) -> list[TaskSummary]:
        missing = Reference("n/a", math.nan, math.nan)
        return summarize(self.rows, self.tasks, {t: self.references.get(t, missing) for t in self.tasks}, self.top_n)

    def best_configs(self, task: str, k: int = 3) -> list[dict[str, Any]]:
        """The k trained children with the best validation accuracy (ties: earlier trial first)."""
        ok = [r for r in self.task_rows(task) if r["status"] == STATUS_OK]
        ranked = sorted(range(len(ok)), key=lambda i: (-ok[i]["val_accuracy"], i))[:k]
        return [{"trial_id": ok[i]["trial_id"], "val_accuracy": ok[i]["val_accuracy"],
                 "test_accuracy": ok[i]["test_accuracy"], "config": self.in_space_order(json.loads(ok[i]["config"]))}
                for i in ranked]

    def in_space_order(self, config: dict[str, Any]) -> dict[str, Any]:
        """The ledger stores configs with sorted keys; people read them in the space's order."""
        order = {name: i for i, (name, _) in enumerate(self.decisions)}
        return dict(sorted(config.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def _store(location: str):
    from transfer_automl.storage import get_store

    return get_store(location)


def _local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def load_search(location: str | Path, with_references: bool = True, data_dir: str | None = None) -> SearchData:
    """Read one search directory; a directory with neither ledger rounds nor a checkpoint is an error.

    References (majority class, median cell) come from the task files the search recorded it read
    (settings.json `_data`: each file's path and content hash), or from the same task names in
    `data_dir` when given; a file that is gone or whose content changed is refused, naming it. A
    search written before that record existed falls back to `data_dir` (else the default data
    directory) and says so in `data_note`."""
    from transfer_automl.search import Ledger, load_checkpoint

    location = str(location)
    store = _store(location)
    if _local(location) and not Path(store.uri).is_dir():
        raise ReportError(f"search directory {location} does not exist")
    rows = Ledger(store.join(LEDGER_DIR)).read().to_pylist()
    body, checkpoint_problem = None, None
    if store.exists(CHECKPOINT_NAME):
        try:
            body = load_checkpoint(store.join(CHECKPOINT_NAME))
        except TamlError as exc:  # the ledger is the record; a report still shows it
            checkpoint_problem = str(exc)
    if not rows and body is None:
        raise ReportError(f"search directory {location} holds no search (no {LEDGER_DIR}/round-*.parquet"
                          + (f"; {checkpoint_problem})" if checkpoint_problem else f", no {CHECKPOINT_NAME})"))
    settings = dict(body.get("search_settings", {})) if body else {}
    tasks = [str(t) for t in body["tasks"]] if body else list(dict.fromkeys(r["task"] for r in rows))
    tasks += [t for t in dict.fromkeys(r["task"] for r in rows) if t not in tasks]
    data = SearchData(
        location=location,
        search_id=str(body["search_id"]) if body else (rows[0]["search_id"] if rows else Path(location).name),
        method=str(body.get("name", "unknown")) if body else "unknown",
        tasks=tasks, rows=rows, top_n=int(settings.get("top_n", 10)), checkpoint=body, settings=settings,
        decisions=_decisions(store, body, rows), distance=_distance(store, location),
        checkpoint_problem=checkpoint_problem, data_record=_recorded_data(store),
    )
    if with_references:  # where the search's own tasks were: what it recorded, unless told otherwise
        data.references = _references(data, data_dir, settings.get("data_dir"))
    return data


def _decisions(store, body: dict[str, Any] | None, rows: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Decision names and choice labels in the space's order: from the checkpoint, else space.yaml,
    else as they appear in the ledger."""
    from transfer_automl.space import space_from_dict

    space = None
    if body is not None:
        space = space_from_dict(body["space"], source="checkpoint")
    elif store.exists(SPACE_NAME):
        import yaml

        space = space_from_dict(yaml.safe_load(store.get_bytes(SPACE_NAME)), source=store.join(SPACE_NAME))
    if space is not None:
        return [(d.name, [label(c) for c in d.choices]) for d in space.decisions]
    seen: dict[str, dict[str, None]] = {}
    for r in rows:
        for name, value in json.loads(r["config"]).items():
            seen.setdefault(name, {})[label(value)] = None
    return [(name, list(choices)) for name, choices in seen.items()]


def label(value: Any) -> str:
    """A choice as the report prints it; the same for a space's choice and its JSON round trip."""
    return value if isinstance(value, str) else str(value)


def _distance(store, location: str) -> list[dict[str, Any]] | None:
    if not store.exists(DISTANCE_NAME):
        return None
    table = store.read_parquet(DISTANCE_NAME)
    missing = sorted({"source", "target", "mean", "std"} - set(table.column_names))
    if missing:
        raise ReportError(f"{store.join(DISTANCE_NAME)} lacks column(s) {missing} (expected source, target, mean, std)")
    return table.select(["source", "target", "mean", "std"]).to_pylist()


def _references(data: SearchData, given: str | None, stored: str | None) -> dict[str, Reference]:
    """Majority class (text) or median cell (benchmark). Text: from the files the search recorded
    (`given`, a --data-dir, overrides their directory); without a record, from `given` or the
    search's own data_dir setting (`stored`), where a task whose data cannot be found simply has no
    reference."""
    out: dict[str, Reference] = {}
    data_dir = given or stored
    benchmark = data.settings.get("benchmark")
    if benchmark:
        try:
            from transfer_automl.tasks.benchmarks import load_benchmark

            bench = load_benchmark(benchmark, data_dir)
        except (TamlError, OSError):
            return out
        for task in data.tasks:
            if task in bench.tasks:
                test = float(np.median(bench.test_metric[task])) if bench.has_test(task) else bench.median_value(task)
                out[task] = Reference("median cell", bench.median_value(task), test, source=bench.source or bench.name)
        return out
    if data.settings.get("table") or not _looks_text(data):
        return out
    from transfer_automl.tasks import data_dir as resolve_data_dir
    from transfer_automl.tasks import load_task

    if data.data_record.get("files"):
        return _recorded_references(data, given)
    data.data_note = (f"{data.location} does not record which task files the search read (written before taml "
                      f"recorded them): references computed from {resolve_data_dir(data_dir)}, which may not be "
                      "the data it searched")
    for task in data.tasks:
        try:
            loaded = load_task(task, data_dir)
        except (TamlError, OSError):
            continue
        out[task] = Reference("majority class", loaded.majority_accuracy("validation"), loaded.majority_accuracy("test"),
                              source=str(resolve_data_dir(data_dir)))
    return out


def _recorded_data(store) -> dict[str, Any]:
    """settings.json's `_data` (study.Study: data directory, task files and their content hashes)."""
    if not store.exists(SETTINGS_NAME):
        return {}
    try:
        body = json.loads(store.get_bytes(SETTINGS_NAME))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"{store.join(SETTINGS_NAME)} is not valid JSON ({exc})") from None
    record = body.get("_data") if isinstance(body, dict) else None
    if record is not None and not (isinstance(record, dict) and isinstance(record.get("files", {}), dict)):
        raise ReportError(f"{store.join(SETTINGS_NAME)}: '_data' is not a data record")
    return dict(record or {})


def _recorded_references(data: SearchData, data_dir: str | None) -> dict[str, Reference]:
    """Majority class of each task from the file the search read: its recorded path (or the same
    name in `data_dir` when given), refused when gone or changed since the search read it."""
    from transfer_automl.tasks.registry import SAMPLES_DIR, absolute_location, resolve_task
    from transfer_automl.tasks.text import load_text_task

    out: dict[str, Reference] = {}
    record = data.data_record
    for task in data.tasks:
        entry = record["files"].get(task)
        if not isinstance(entry, dict) or "path" not in entry or "content_hash" not in entry:
            continue  # a task the record does not name (a ledger row of another task list): no reference
        recorded = str(entry["path"])
        if data_dir:
            try:
                path: str | Path = resolve_task(task, data_dir)
            except TamlError:
                raise ReportError(f"search {data.search_id} read task {task!r} from {recorded}; --data-dir "
                                  f"{data_dir} has no {task}.parquet") from None
        elif record.get("bundled_samples") and not Path(recorded).is_file():
            path = SAMPLES_DIR / Path(recorded).name  # the package's samples, wherever it is installed now
        else:
            path = recorded
        if "://" not in str(path) and not Path(path).is_file():
            raise ReportError(f"search {data.search_id} read task {task!r} from {path}, which is not there any "
                              "more (moved or deleted); pass --data-dir with the directory that holds it now")
        try:
            loaded = load_text_task(path, name=task)
        except (TamlError, OSError) as exc:
            raise ReportError(f"search {data.search_id} read task {task!r} from {path}, which cannot be read now: "
                              f"{exc}") from None
        if loaded.content_hash != entry["content_hash"]:
            raise ReportError(f"search {data.search_id} read task {task!r} from {recorded} with content hash "
                              f"{entry['content_hash']}; {path} now has {loaded.content_hash}: the data changed, so "
                              "the references would not be the search's; pass --data-dir with the original files")
        source = str(Path(absolute_location(path)).parent) if "://" not in str(path) else str(path)
        out[task] = Reference("majority class", loaded.majority_accuracy("validation"),
                              loaded.majority_accuracy("test"), source=source)
    return out


def _looks_text(data: SearchData) -> bool:
    return any(name == INPUT_MODULE for name, _ in data.decisions)


# -- series the figures plot --------------------------------------------------------------------------


def top_n_curves(rows: list[dict[str, Any]], n: int) -> dict[str, np.ndarray]:
    """Per trial of one task (x = 1..len(rows)): val and test accuracy-topN of the trained children so
    far, NaN until the first trained child; also each trial's own val accuracy (NaN if not trained)."""
    vals: list[float] = []
    tests: list[float] = []
    top_val, top_test, sampled = [], [], []
    for r in rows:
        ok = r["status"] == STATUS_OK
        if ok:
            vals.append(r["val_accuracy"])
            tests.append(r["test_accuracy"])
        top_val.append(accuracy_top_n(vals, vals, n))
        top_test.append(accuracy_top_n(vals, tests, n))
        sampled.append(r["val_accuracy"] if ok else math.nan)
    return {"val": np.array(top_val, dtype=float), "test": np.array(top_test, dtype=float),
            "sampled": np.array(sampled, dtype=float)}


def choice_frequencies(data: SearchData, last: int | None = None) -> dict[str, np.ndarray]:
    """{decision: [num_tasks, num_choices]} frequency of each choice among each task's trials
    (the last `last` of them, or all); rows of a task without trials are NaN."""
    out = {}
    for name, choices in data.decisions:
        matrix = np.full((len(data.tasks), len(choices)), np.nan)
        for i, task in enumerate(data.tasks):
            configs = [json.loads(r["config"]) for r in data.task_rows(task)]
            if last is not None:
                configs = configs[-last:]
            picked = [label(c[name]) for c in configs if name in c]
            if picked:
                matrix[i] = [picked.count(choice) / len(picked) for choice in choices]
        out[name] = matrix
    return out


def sliding_choice_probability(rows: list[dict[str, Any]], decision: str, choices: list[str],
                               window: int) -> np.ndarray:
    """[len(rows), num_choices]: the frequency of each choice over the last `window` trials up to each trial."""
    picked = [label(json.loads(r["config"]).get(decision)) for r in rows]
    out = np.zeros((len(rows), len(choices)))
    for k in range(len(rows)):
        recent = picked[max(0, k + 1 - window): k + 1]
        out[k] = [recent.count(c) / len(recent) for c in choices]
    return out


def policy_probabilities(data: SearchData, samples: int = 1000, seed: int = 0) -> dict[str, np.ndarray] | None:
    """The controller's learned per-task distribution of each decision, {decision: [tasks, choices]},
    estimated from `samples` configurations per task sampled from the checkpoint's policy (exact
    marginals are intractable for an autoregressive controller past the first decision). None when
    the search has no controller."""
    import torch

    from transfer_automl.search import ControllerSearch

    body = data.checkpoint
    if body is None or "controller_state" not in body:
        return None
    search = ControllerSearch.from_checkpoint(body)
    if [d.name for d in search.space.decisions] != [name for name, _ in data.decisions]:
        return None
    generator = torch.Generator().manual_seed(seed)
    out = {name: np.full((len(data.tasks), len(choices)), np.nan) for name, choices in data.decisions}
    for t, task in enumerate(data.tasks):
        if task not in search.tasks:  # a task seen in the ledger but unknown to the controller
            continue
        with torch.no_grad():
            actions = search.controller.sample(torch.full((samples,), search.tasks.index(task)), generator).actions
        for i, (name, choices) in enumerate(data.decisions):
            column = actions[:, i]
            column = column[column >= 0]  # an inactive conditional decision samples nothing (-1)
            counts = np.bincount(column.numpy(), minlength=len(choices))[: len(choices)]
            out[name][t] = counts / max(1, len(column))
    return out


def embedding_similarity(body: dict[str, Any] | None) -> tuple[list[str], np.ndarray] | None:
    """Cosine similarity of the controller's learned task embeddings (T-AML Fig. 6), as
    `transfer.distances.EmbeddingCosine` computes it; None without a controller."""
    state = body.get("controller_state") if body else None
    if not isinstance(state, dict):
        return None
    keys = [k for k in state if k.endswith("task_embeddings.weight")]
    if len(keys) != 1:
        return None
    e = state[keys[0]].detach().double().numpy()
    norm = np.linalg.norm(e, axis=1, keepdims=True)
    unit = e / np.where(norm > 0, norm, 1.0)
    return [str(t) for t in body["tasks"]], np.clip(unit @ unit.T, -1.0, 1.0)


@dataclass
class EmbeddingMovement:
    """How far learning moved each task embedding from where it started (the similarity figure
    shows the learned embeddings only where they moved further than their own start's scale)."""

    tasks: list[str]
    moved: np.ndarray  # [T] L2 distance of each task's embedding from its initial one
    max_change: np.ndarray  # [T] largest change of a single weight
    scale: float  # mean L2 norm of the initial embeddings: the random (or transferred) start's own size
    initial_from: str  # where the initial embeddings came from (the checkpoint, or the seed)

    @property
    def learned(self) -> np.ndarray:
        """[T] bool: moved further than the initialization scale."""
        return self.moved > self.scale


def embedding_movement(body: dict[str, Any] | None) -> EmbeddingMovement | None:
    """Each task embedding's distance from its initialization: the initial embeddings recorded in
    the checkpoint, or for an older scratch search re-derived from its seed. None without a
    controller, or when the start cannot be known (an older transferred search)."""
    import torch

    from transfer_automl.search.multitask import ControllerSearch, task_embedding_table

    state = body.get("controller_state") if body else None
    if not isinstance(state, dict):
        return None
    final = task_embedding_table(state)
    if final is None:
        return None
    initial, initial_from = body.get("initial_task_embeddings"), "recorded in the checkpoint"
    if not isinstance(initial, torch.Tensor):
        settings = dict(body.get("search_settings") or {})
        if settings.get("init_from", "scratch") != "scratch" or "seed" not in settings:
            return None
        initial = ControllerSearch.initial_embeddings_from_seed(body, int(settings["seed"]))
        initial_from = f"re-derived from the search's seed {settings['seed']} (an older checkpoint)"
        if initial is None:
            return None
    if tuple(initial.shape) != tuple(final.shape):
        return None
    start, end = initial.detach().double().numpy(), final.detach().double().numpy()
    delta = end - start
    return EmbeddingMovement([str(t) for t in body["tasks"]], np.linalg.norm(delta, axis=1),
                             np.abs(delta).max(axis=1), float(np.linalg.norm(start, axis=1).mean()), initial_from)


def relative_entropy(probabilities: np.ndarray) -> np.ndarray:
    """[tasks, choices] -> [tasks]: each row's entropy over log(choices), 1 = uniform, 0 = one
    choice; NaN for a row of NaN (no policy for that task) or a decision of one choice."""
    p = np.asarray(probabilities, dtype=float)
    if p.shape[1] < 2:
        return np.full(p.shape[0], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    out = terms.sum(axis=1) / np.log(p.shape[1])
    out[~np.isfinite(p).all(axis=1)] = np.nan
    return out


def distance_matrix(rows: list[dict[str, Any]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    names = list(dict.fromkeys([r["source"] for r in rows] + [r["target"] for r in rows]))
    mean = np.full((len(names), len(names)), np.nan)
    std = np.full_like(mean, np.nan)
    for r in rows:
        i, j = names.index(r["source"]), names.index(r["target"])
        mean[i, j], std[i, j] = r["mean"], r["std"]
    return names, mean, std


def find_searches(root: str | Path, max_depth: int = 3) -> list[Path]:
    """Directories under `root` (itself included) that hold a search: a checkpoint or ledger rounds."""
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"runs directory {root} does not exist")
    found = []

    def visit(directory: Path, depth: int) -> None:
        if (directory / CHECKPOINT_NAME).is_file() or any((directory / LEDGER_DIR).glob("round-*.parquet")):
            found.append(directory)
            return
        if depth < max_depth:
            for child in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
                visit(child, depth + 1)

    try:
        visit(root, 0)
    except OSError as exc:
        raise StorageError(f"runs directory {root}: {exc}") from None
    return found

"""`render_report`: a search directory -> one self-contained HTML page with the papers' figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import numpy as np

from transfer_automl.report import figures
from transfer_automl.report.data import (
    SearchData,
    choice_frequencies,
    distance_matrix,
    embedding_movement,
    embedding_similarity,
    load_search,
    policy_probabilities,
    relative_entropy,
    sliding_choice_probability,
    top_n_curves,
)
from transfer_automl.report.html import Page, number

# The decision whose evolution T-AML Fig. 5 plots (pre-trained embedding modules); MNMS calls it
# embedding_table; other spaces (benchmarks) show their first decision.
_EVOLUTION_DECISIONS = ("input_module", "embedding_table")


@dataclass
class Report:
    html: str
    search: SearchData
    compare: list[SearchData]
    sections: list[str]
    omitted: dict[str, str]
    figures: int


def render_report(search_dir: str, out_path: str, compare: Sequence[str] = (), last: int | None = None,
                  data_dir: str | None = None) -> Path:
    """Write the report of the search in `search_dir` (compared with the searches in `compare`,
    e.g. a random-search sibling) to `out_path`; returns the written path. Everything is read and
    drawn before anything is written, so a bad input leaves `out_path` untouched."""
    from transfer_automl.storage import atomic_write

    report = build_report(search_dir, compare, last, data_dir)
    out = Path(out_path)
    return atomic_write(out, lambda tmp: Path(tmp).write_text(report.html, encoding="utf-8"))


def build_report(search_dir: str, compare: Sequence[str] = (), last: int | None = None,
                 data_dir: str | None = None) -> Report:
    if last is not None and last < 1:
        from transfer_automl.errors import ConfigError

        raise ConfigError(f"last must be >= 1 trials, got {last}")
    data = load_search(search_dir, data_dir=data_dir)
    others = [load_search(c, with_references=False) for c in compare]
    page = Page(f"taml report: {data.search_id}")
    _header(page, data, others)
    _summary(page, data, others)
    _curves(page, data, others)
    _heatmaps(page, data, last)
    _evolution(page, data)
    _similarity(page, data)
    _distance(page, data)
    _best_configs(page, data)
    return Report(page.render(), data, others, page.sections, page.omitted, page.figures)


def _labels(runs: list[SearchData]) -> list[str]:
    """Legend names: the method, with the search id where two runs share a method."""
    methods = [r.method for r in runs]
    return [r.method if methods.count(r.method) == 1 else f"{r.method} ({r.search_id})" for r in runs]


def _header(page: Page, data: SearchData, others: list[SearchData]) -> None:
    page.parts.append(f"<h1>Search {escape(data.search_id)}</h1>")
    compared = "".join(f"<br>compared with: <b>{escape(o.method)}</b> {escape(o.search_id)} "
                       f"(<code>{escape(o.location)}</code>, {len(o.rows)} trials)" for o in others)
    page.paragraph(
        f"method <b>{escape(data.method)}</b> · {len(data.rows)} trials · tasks {escape(', '.join(data.tasks))} · "
        f"directory <code>{escape(data.location)}</code>{compared}<br>"
        f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by <code>taml report</code>. "
        f"accuracy-top{data.top_n}: mean test accuracy of the {data.top_n} trained children with the best "
        "validation accuracy (Transfer AutoML, Table 3).")
    shown = {k: v for k, v in data.settings.items() if v is not None}
    if shown:
        page.paragraph("settings: " + " · ".join(f"{escape(str(k))}=<code>{escape(str(v))}</code>"
                                                 for k, v in shown.items()))


def _summary(page: Page, data: SearchData, others: list[SearchData]) -> None:
    page.heading("summary", "Summary per task")
    n = data.top_n
    header = ["task", "trials", "trained", "best val", "its test", f"accuracy-top{n}", "reference", "reference (test)"]
    header += [f"{o.method}: accuracy-top{n} (trials)" for o in others]
    other_summaries = [{s.task: s for s in o.summaries()} for o in others]
    rows = []
    for s in data.summaries():
        row = [("task", escape(s.task)), ("num", str(s.trials)), ("num", str(s.trained)),
               ("num", number(s.best_val_accuracy)), ("num", number(s.best_test_accuracy)),
               ("num", number(s.accuracy_top_n)), ("", escape(s.reference)), ("num", number(s.reference_test))]
        row += [("num", f"{number(o[s.task].accuracy_top_n)} ({o[s.task].trials})" if s.task in o else "n/a")
                for o in other_summaries]
        rows.append(row)
    page.table("summary-table", header, rows)
    sources = sorted({r.source for r in data.references.values() if r.source})
    missing = [t for t in data.tasks if t not in data.references]
    text = f"References computed from {escape(', '.join(sources))}." if sources else ""
    if missing:
        text += (f" No reference for {escape(', '.join(missing))}: task data not found "
                 "(pass the search's --data-dir to taml report).")
    if data.data_note:
        text += f" Note: {escape(data.data_note)}."
    if text:
        page.paragraph(text.strip())


def _curves(page: Page, data: SearchData, others: list[SearchData]) -> None:
    page.heading("curves", f"Accuracy-top{data.top_n} vs trials")
    runs = [data, *others]
    labels = _labels(runs)
    curves = {label: {t: top_n_curves(r.task_rows(t), data.top_n) for t in data.tasks}
              for label, r in zip(labels, runs, strict=True)}
    refs = {t: ref.test for t, ref in data.references.items()}
    caption = (f"Per task: test accuracy-top{data.top_n} (solid) and validation accuracy-top{data.top_n} (dotted) "
               "of the trained children so far, each sampled child's validation accuracy (dots), "
               f"as MNMS Fig. 3 and T-AML Figs. 2-4. With fewer than {data.top_n} trained children the curves are "
               f"the mean of all of them, so they may fall early on. Drawn from {_basis(data)}.")
    if others:
        caption += f" Dashed: the compared searches' test accuracy-top{data.top_n} on the same task."
    else:
        caption += " No search to compare with (pass --compare <random-search dir>)."
    page.add_figure(figures.accuracy_curves(data.tasks, curves, labels[0], data.top_n, refs),
                    "accuracy-top10 vs trials", caption)


def _heatmaps(page: Page, data: SearchData, last: int | None) -> None:
    span = f"the last {last} trials of each task" if last else "all trials of each task"
    page.heading("actions", "Per-task action distributions")
    sampled = choice_frequencies(data, last)
    page.paragraph(f"Frequency of each choice among {escape(span)} in the ledger (MNMS Fig. 4). "
                   f"Drawn from {_basis(data)}.")
    page.grid([page.figure(figures.choice_heatmap(name, choices, data.tasks, sampled[name], "sampled"),
                           f"sampled choices of {name}") for name, choices in data.decisions])
    policy = _policy(data)
    if policy is None:
        page.omit("policy", "Learned per-task policy", _no_controller(data))
        return
    page.heading("policy", "Learned per-task policy")
    entropy = {name: relative_entropy(policy[name]) for name, _ in data.decisions}
    values = np.concatenate([e[np.isfinite(e)] for e in entropy.values()] or [np.array([])])
    mean = float(values.mean()) if values.size else float("nan")
    if not np.isfinite(mean):
        verdict = ""
    elif mean >= 0.9:
        verdict = (f" Mean entropy relative to uniform {mean:.2f} (1 = uniform): the controller has barely "
                   "learned yet; these distributions are close to its random start.")
    else:
        verdict = f" Mean entropy relative to uniform {mean:.2f} (1 = uniform, 0 = one choice)."
    page.paragraph("The final controller's distribution over each decision per task, estimated from 1,000 "
                   "configurations per task sampled from the checkpoint's policy; beside each task its entropy "
                   f"relative to uniform (H / log of the number of choices). Drawn from {_basis(data)}.{verdict}")
    page.grid([page.figure(figures.choice_heatmap(name, choices, data.tasks, policy[name], "controller policy",
                                                  row_notes=[f"H/Hmax {e:.2f}" if np.isfinite(e) else "H/Hmax -"
                                                             for e in entropy[name]]),
                           f"policy of {name}") for name, choices in data.decisions])


def _policy(data: SearchData):
    if "_policy" not in data.__dict__:
        data.__dict__["_policy"] = policy_probabilities(data)
    return data.__dict__["_policy"]


def _basis(data: SearchData) -> str:
    """What a figure is drawn from: trials in the ledger and the search's told steps."""
    trials = f"{len(data.rows)} trial{'' if len(data.rows) == 1 else 's'}"
    if data.checkpoint is None:
        return f"{trials} (no checkpoint: steps unknown)"
    steps = int(data.checkpoint.get("step", 0))
    kind = "controller steps" if isinstance(data.checkpoint.get("controller_state"), dict) else "search steps"
    return f"{trials}, {steps} {kind}"


def _no_controller(data: SearchData) -> str:
    if data.checkpoint_problem:
        return data.checkpoint_problem
    if data.checkpoint is None:
        return f"{data.location} has no checkpoint.pt"
    return f"the {data.method} search has no controller (its checkpoint holds no policy or task embeddings)"


def _evolution(page: Page, data: SearchData) -> None:
    names = [name for name, _ in data.decisions]
    if not names:
        page.omit("evolution", "Evolution of choice probabilities", "the search space has no decisions")
        return
    decision = next((d for d in _EVOLUTION_DECISIONS if d in names), names[0])
    choices = dict(data.decisions)[decision]
    counts = [len(data.task_rows(t)) for t in data.tasks if data.task_rows(t)]
    window = max(5, min(100, round(min(counts, default=15) / 3)))  # smooth, yet short enough to show change
    sliding = {t: sliding_choice_probability(data.task_rows(t), decision, choices, window) for t in data.tasks}
    policy = _policy(data)
    page.heading("evolution", f"Evolution of P({decision}) vs trials")
    note = ("◆: the final controller policy's probability." if policy is not None
            else f"No controller policy to mark ({_no_controller(data)}).")
    page.add_figure(
        figures.choice_evolution(decision, choices, data.tasks, sliding, window,
                                 policy[decision] if policy is not None else None),
        f"evolution of {decision}",
        f"Frequency of each {decision} choice among the last {window} trials of the task (T-AML Fig. 5; "
        f"at most the 5 most frequent choices). {note} Drawn from {_basis(data)}.")


def _similarity(page: Page, data: SearchData) -> None:
    found = embedding_similarity(data.checkpoint)
    if found is None:
        page.omit("similarity", "Task-embedding similarity", _no_controller(data))
        return
    names, similarity = found
    movement = embedding_movement(data.checkpoint)
    page.heading("similarity", "Task-embedding similarity")
    if movement is None:
        moved = (" How far the embeddings moved from their initialization is unknown (an older transferred "
                 "search's checkpoint does not record its start), so these may be the start, not what was learned.")
    elif not movement.learned.any():
        moved = (f" Not yet learned: every embedding moved less from its initialization (at most "
                 f"{movement.moved.max():.3g} in L2, {movement.max_change.max():.3g} in one weight) than the "
                 f"initialization scale {movement.scale:.3g} (the mean norm of the initial embeddings), so the "
                 f"similarities shown are those of the start. Initial embeddings {movement.initial_from}.")
    else:
        late = [t for t, learned in zip(movement.tasks, movement.learned, strict=True) if not learned]
        moved = (f" Right: each embedding's L2 distance from its initialization against the initialization scale "
                 f"{movement.scale:.3g}" + (f"; not yet learned: {', '.join(late)}" if late else "")
                 + f". Initial embeddings {movement.initial_from}.")
    page.add_figure(figures.similarity_heatmap(names, similarity, movement), "task embedding cosine similarity",
                    "Cosine similarity of the controller's task embeddings (T-AML Fig. 6), drawn from "
                    f"{_basis(data)}.{moved}")


def _distance(page: Page, data: SearchData) -> None:
    if not data.distance:
        page.omit("distance", "Task distance", f"{data.location} has no distance.parquet (write one with "
                  "`taml distance --tasks ... --out <this directory>`)")
        return
    names, mean, std = distance_matrix(data.distance)
    page.heading("distance", "Task distance")
    page.add_figure(figures.distance_heatmap(names, mean, std), "task distance matrix",
                    "Fisher log-determinant distance from distance.parquet: source b (rows), target t (columns).")


def _best_configs(page: Page, data: SearchData, k: int = 3) -> None:
    page.heading("best", "Best configurations per task")
    rows = []
    for task in data.tasks:
        for rank, best in enumerate(data.best_configs(task, k), start=1):
            config = ", ".join(f"{escape(str(key))}={escape(str(value))}" for key, value in best["config"].items())
            rows.append([("task", escape(task)), ("num", str(rank)), ("num", number(best["val_accuracy"])),
                         ("num", number(best["test_accuracy"])), ("config", config),
                         ("", escape(best["trial_id"]))])
    page.table("best-table", ["task", "rank", "val", "test", "config", "trial"], rows)
    if not rows:
        page.paragraph("No child trained to the end yet.", css="omitted")


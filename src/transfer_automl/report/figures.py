"""The report's figures as PNG bytes (matplotlib, Agg backend: no display needed).

Each function returns one PNG; sizes follow the data (tasks, choices) so labels never overlap.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

# Colours that stay apart for up to 10 lines (matplotlib's tab10).
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    return buffer.getvalue()


def _grid(count: int, columns: int = 3) -> tuple[int, int]:
    cols = min(columns, max(1, count))
    return math.ceil(count / cols), cols


def _integer_trials(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _shared_legend(fig, axes, columns: int) -> None:
    """One legend below all panels: the runs (or choices) are the same in every panel, and a
    legend inside each panel covered the curves."""
    handles, labels = {}, []
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            if text not in handles:
                handles[text] = handle
                labels.append(text)
    if labels:
        fig.legend([handles[t] for t in labels], labels, loc="outside lower center", ncol=min(columns, len(labels)),
                   fontsize=9, frameon=False)


def accuracy_curves(tasks: Sequence[str], curves: dict[str, dict[str, dict[str, np.ndarray]]], main: str,
                    top_n: int, references: dict[str, float]) -> bytes:
    """Accuracy-topN vs the task's trials, one panel per task (MNMS Fig. 3, T-AML Figs. 2-4).

    `curves[run label][task]` holds `val`, `test` and `sampled` series; `main` is this search's
    label, drawn with its val curve and each sampled child; other runs (e.g. random search) get
    their test curve only. `references[task]` is drawn as a grey line.
    """
    plt = _pyplot()
    rows, cols = _grid(len(tasks))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows + 0.6), squeeze=False, layout="constrained")
    for ax, task in zip(axes.flat, tasks, strict=False):
        for k, (run, per_task) in enumerate(curves.items()):
            series = per_task.get(task)
            if series is None or not len(series["test"]):
                continue
            x = np.arange(1, len(series["test"]) + 1)
            colour = _PALETTE[k % len(_PALETTE)]
            if run == main:
                ax.scatter(x, series["sampled"], s=9, color=colour, alpha=0.3, label=f"{run}: each child's val accuracy")
                ax.plot(x, series["val"], color=colour, linestyle=":", label=f"{run}: val acc-top{top_n}")
            ax.plot(x, series["test"], color=colour, linewidth=2 if run == main else 1.5,
                    linestyle="-" if run == main else "--", label=f"{run}: test acc-top{top_n}")
        if task in references and math.isfinite(references[task]):
            ax.axhline(references[task], color="grey", linewidth=1, linestyle="-.", label="reference (test)")
        ax.set_title(task, fontsize=11)
        ax.set_xlabel(f"trials of {task}")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        _integer_trials(ax)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    _shared_legend(fig, axes.flat, columns=3)
    return _png(fig)


def choice_heatmap(decision: str, choices: Sequence[str], tasks: Sequence[str], matrix: np.ndarray,
                   title: str, row_notes: Sequence[str] | None = None) -> bytes:
    """One decision's per-task distribution over its choices (MNMS Fig. 4): rows tasks, columns
    choices; `row_notes` are added to the task labels (e.g. the policy's entropy)."""
    plt = _pyplot()
    if row_notes is not None:
        tasks = [f"{t} ({note})" for t, note in zip(tasks, row_notes, strict=True)]
    longest = max((len(c) for c in choices), default=1)
    width = max(3.0, 0.42 * len(choices) + 0.07 * max(len(t) for t in tasks) + 1.3)
    height = max(1.8, 0.32 * len(tasks) + 0.065 * min(longest, 24) + 0.9)
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    image = ax.imshow(np.nan_to_num(matrix, nan=0.0), cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(choices)), [c[:24] for c in choices], rotation=45 if longest > 4 else 0,
                  ha="right" if longest > 4 else "center", fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    ax.set_title(f"{decision} ({title})", fontsize=9)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            value = matrix[i, j]
            text = "-" if not math.isfinite(value) else f"{value:.2f}".lstrip("0") if value < 1 else "1"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if value > 0.6 else "black")
    fig.colorbar(image, ax=ax, shrink=0.9, pad=0.02, aspect=12, ticks=[0.0, 0.5, 1.0])
    return _png(fig)


def choice_evolution(decision: str, choices: Sequence[str], tasks: Sequence[str],
                     sliding: dict[str, np.ndarray], window: int, policy: np.ndarray | None,
                     most: int = 5) -> bytes:
    """Probability of each choice of one decision vs the task's trials (T-AML Fig. 5): the sampled
    frequency over a sliding window, and the checkpoint policy's probability at the last trial."""
    plt = _pyplot()
    rows, cols = _grid(len(tasks))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.0 * rows + 0.5), squeeze=False, layout="constrained")
    for t, (ax, task) in enumerate(zip(axes.flat, tasks, strict=False)):
        series = sliding.get(task)
        if series is None or not len(series):
            ax.set_title(f"{task}: no trials", fontsize=11)
            continue
        x = np.arange(1, len(series) + 1)
        shown = np.argsort(-series.mean(axis=0), kind="stable")[:most]  # the paper plots the most likely few
        for j in sorted(shown):
            colour = _PALETTE[j % len(_PALETTE)]
            ax.plot(x, series[:, j], color=colour, label=choices[j])
            if policy is not None and math.isfinite(policy[t, j]):  # just right of the last trial
                ax.scatter([x[-1] + 0.02 * len(x) + 0.3], [policy[t, j]], color=colour, marker="D", s=30,
                           edgecolor="black", linewidth=0.6, zorder=3, clip_on=False)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(task, fontsize=11)
        ax.set_xlabel(f"trials of {task}")
        ax.set_ylabel(f"P({decision})")
        ax.grid(alpha=0.3)
        _integer_trials(ax)
        if policy is not None and t == 0:  # a legend entry for the markers
            ax.scatter([], [], marker="D", s=30, color="white", edgecolor="black", label="final controller policy")
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    _shared_legend(fig, axes.flat, columns=6)
    return _png(fig)


def similarity_heatmap(names: Sequence[str], similarity: np.ndarray, movement=None) -> bytes:
    """Cosine similarity of the learned task embeddings (T-AML Fig. 6); with `movement`
    (report.data.EmbeddingMovement) beside it, each embedding's distance from its initialization
    against the initialization scale, and "not yet learned" where it moved less than that."""
    plt = _pyplot()
    k = len(names)
    size = max(3.0, 0.55 * k + 1.8)
    if movement is None:
        fig, ax = plt.subplots(figsize=(size + 0.8, size), layout="constrained")
    else:
        fig, (ax, bars) = plt.subplots(1, 2, figsize=(2 * size + 1.6, size), layout="constrained",
                                       gridspec_kw={"width_ratios": [1.2, 1]})
        _movement_bars(bars, movement)
    image = ax.imshow(similarity, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{similarity[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(similarity[i, j]) > 0.6 else "black")
    unlearned = movement is not None and not movement.learned.any()
    ax.set_title("cosine similarity of task embeddings" + (":\nnot yet learned (still near its start)" if unlearned else ""),
                 fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _png(fig)


def _movement_bars(ax, movement) -> None:
    k = len(movement.tasks)
    y = np.arange(k)
    colours = ["#2ca02c" if learned else "#7f7f7f" for learned in movement.learned]
    ax.barh(y, movement.moved, color=colours)
    ax.axvline(movement.scale, color="black", linestyle="--", linewidth=1,
               label=f"initialization scale {movement.scale:.3f}")
    ax.set_yticks(y, movement.tasks, fontsize=8)
    ax.invert_yaxis()  # the same order as the heatmap's rows
    for i in range(k):
        ax.text(movement.moved[i], i, f" {movement.moved[i]:.3g}" + ("" if movement.learned[i] else " not yet learned"),
                va="center", fontsize=8)
    ax.set_xlim(0, max(movement.scale, float(movement.moved.max(initial=0.0))) * 1.9)
    ax.set_xlabel("L2 distance from its initial embedding")
    ax.set_title("distance moved from initialization", fontsize=10)
    ax.legend(fontsize=8, loc="lower right", frameon=False)


def distance_heatmap(names: Sequence[str], mean: np.ndarray, std: np.ndarray) -> bytes:
    """The task distance matrix of `taml distance`: mean d[source, target], cells annotated mean±std."""
    plt = _pyplot()
    k = len(names)
    size = max(3.4, 0.8 * k + 1.8)
    fig, ax = plt.subplots(figsize=(size + 0.8, size), layout="constrained")
    image = ax.imshow(mean, cmap="viridis")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("target task t")
    ax.set_ylabel("source task b")
    high = np.nanmax(mean) if np.isfinite(mean).any() else 0.0
    for i in range(k):
        for j in range(k):
            colour = "black" if mean[i, j] > 0.6 * high else "white"
            ax.text(j, i, f"{mean[i, j]:.2f}\n±{std[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_title("task distance d[b, t] (mean ± std)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _png(fig)

"""The search's progress display (console.SearchProgress): the trial now training, an ETA from
measured child times labelled as an estimate, the phases after the last trial, and one line per
finished trial when stderr is not a terminal."""

from __future__ import annotations

import io
import re

import pytest

from transfer_automl.cli import main
from transfer_automl.console import EtaEstimate, SearchProgress, cost_key, duration, short_config
from transfer_automl.steps.search import run_search
from transfer_automl.study import SearchSettings
from transfer_automl.tracking import MemoryTracker

GLOVE_SMALL = {"input_module": "glove-6b-50d", "fine_tune": False, "hidden_layers": 2, "hidden_size": 64,
               "activation": "swish", "normalization": "layer", "dropout": 0.1, "deep_lr": 0.03, "deep_reg": 0.0001,
               "wide_lr": 0.3, "wide_reg": "disable_wide_tower", "training_samples": 10000}
HASHED_BIG = {**GLOVE_SMALL, "input_module": "random-hashed-64", "training_samples": 30000}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_short_config_names_module_shape_towers_and_budget():
    assert short_config(GLOVE_SMALL) == "glove-6b-50d frozen 2x64 swish layer drop0.1 deep0.03 no wide 10k samples"
    assert short_config({**GLOVE_SMALL, "deep_reg": "disable_deep_tower", "wide_reg": 0.0, "fine_tune": True}) == \
        "glove-6b-50d tuned no deep wide0.3 10k samples"
    assert short_config({"depth": 3, "act": "relu"}) == "depth=3 act=relu"
    assert len(short_config({f"d{i}": "x" * 10 for i in range(20)}, width=40)) == 40
    assert cost_key(GLOVE_SMALL) == (("input_module", "glove-6b-50d"), ("fine_tune", False),
                                     ("training_samples", 10000))
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]


def test_eta_uses_each_cost_keys_measured_time_and_the_overhead_around_children():
    eta = EtaEstimate()
    assert eta.remaining(10) is None  # nothing measured: no number at all
    eta.add(cost_key(GLOVE_SMALL), 0.0, 1.0)  # 1 s
    eta.add(cost_key(HASHED_BIG), 1.0, 10.0)  # 9 s
    eta.add(cost_key(GLOVE_SMALL), 10.0, 13.0)  # 3 s; 13 s of children in 13 s of wall time
    assert eta.child(cost_key(GLOVE_SMALL)) == pytest.approx(2.0)
    assert eta.child(cost_key(HASHED_BIG)) == pytest.approx(9.0)
    assert eta.child((("input_module", "never-seen"),)) == pytest.approx(13 / 3)  # all children's mean
    # 4 unsampled trials at the mean, plus a hashed child 4 s into its 9
    assert eta.remaining(4, cost_key(HASHED_BIG), 4.0) == pytest.approx(4 * 13 / 3 + 5.0)
    assert eta.remaining(0, cost_key(GLOVE_SMALL), 5.0) == 0.0  # over its estimate: not negative
    eta.add(cost_key(GLOVE_SMALL), 26.0, 28.0)  # 13 s between children: updates, commits, logging
    assert eta.overhead() == pytest.approx(28.0 / 15.0)
    assert eta.remaining(1) == pytest.approx(15 / 4 * 28 / 15)


def test_a_terminal_shows_the_trial_now_training_and_a_labelled_estimate():
    clock = Clock()
    progress = SearchProgress(total=3, enabled=True, stream=io.StringIO(), terminal=False, clock=clock)
    progress.terminal = True  # draw the terminal's lines without starting a live display
    progress.trial_started("mpqa", GLOVE_SMALL)
    clock.now += 7
    bar, training = progress.status_lines()
    assert "0/3 trials" in bar and "7s elapsed" in bar and "ETA after the first child" in bar
    assert training == "  training mpqa: glove-6b-50d frozen 2x64 swish layer drop0.1 deep0.03 no wide 10k samples · 7s"
    clock.now += 3
    progress.trial_finished("mpqa", GLOVE_SMALL, "ok", 0.8)
    progress.trial_started("sms_spam", GLOVE_SMALL)
    clock.now += 4
    bar, training, best = progress.status_lines()
    # 10 s per measured child of this key: 6 s left of this one, 10 s for the last, no overhead yet
    assert "1/3 trials" in bar and "ETA ~16s (estimate from 1 child)" in bar
    assert training.startswith("  training sms_spam:") and training.endswith("· 4s")
    assert best == "  best so far: mpqa 0.8000"


def test_the_best_so_far_per_task_counts_only_ok_trials_and_starts_from_a_resumed_searchs_best():
    clock, stream = Clock(), io.StringIO()
    progress = SearchProgress(total=9, done=4, enabled=True, stream=stream, terminal=False, clock=clock,
                              best={"sst2": 0.81})
    for task, status, val in (("mpqa", "ok", 0.70), ("mpqa", "ok", 0.66), ("sst2", "ok", 0.79),
                              ("mpqa", "diverged", 0.99), ("sst2", "ok", 0.84)):
        progress.trial_started(task, GLOVE_SMALL)
        progress.trial_finished(task, GLOVE_SMALL, status, val)
    assert progress.best == {"mpqa": 0.70, "sst2": 0.84}
    progress.round_finished(1, 5, 0.84)
    assert stream.getvalue().splitlines()[-1].endswith("best so far: mpqa 0.7000, sst2 0.8400")
    progress.terminal = True
    assert progress.status_lines()[-1] == "  best so far: mpqa 0.7000, sst2 0.8400"
    progress.best = {f"t{i}": 0.5 for i in range(8)}
    assert progress.best_so_far().endswith("t5 0.5000, +2 more")


def test_not_a_terminal_one_line_per_trial_and_round_then_the_phases():
    clock, stream = Clock(), io.StringIO()
    progress = SearchProgress(total=2, enabled=True, stream=stream, terminal=False, clock=clock)
    for task, seconds in (("mpqa", 2.0), ("sms_spam", 4.0)):
        progress.trial_started(task, GLOVE_SMALL)
        clock.now += seconds
        progress.trial_finished(task, GLOVE_SMALL, "ok" if task == "mpqa" else "diverged", 0.75)
    progress.round_finished(0, 2, 0.75)
    progress.phase("refit", "retraining mpqa's best child")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("trial 1/2 mpqa: val 0.7500 in 2.0s (glove-6b-50d frozen")
    assert "ETA ~2s (estimate from 1 child)" in lines[0]
    assert lines[1].startswith("trial 2/2 sms_spam: diverged in 4.0s") and "ETA ~0s" in lines[1]
    assert lines[2:] == ["round 0 done (2 trials, controller updated): best val of the round 0.7500 · best so far: "
                         "mpqa 0.7500", "refit: retraining mpqa's best child"]
    silent = io.StringIO()
    off = SearchProgress(total=1, enabled=False, stream=silent, terminal=False, clock=clock)
    off.trial_started("t", {})
    off.trial_finished("t", {}, "ok", 1.0)
    off.phase("refit")
    assert silent.getvalue() == ""


def test_a_search_prints_one_line_per_trial_and_its_phases(tmp_path, toy_table):
    stream = io.StringIO()
    run_search(SearchSettings(table=str(toy_table), metric_columns=("t1", "t2"), trials=4, batch_size=2,
                              method="rs", out=str(tmp_path / "s"), search_id="p"), tracker=MemoryTracker(),
               stream=stream)
    lines = stream.getvalue().splitlines()
    trials = [line for line in lines if line.startswith("trial ")]
    assert [re.match(r"trial (\d)/4 (t1|t2): val ", line) is not None for line in trials] == [True] * 4
    assert [line.split(" (")[0] for line in lines if line.startswith("round ")] == ["round 0 done", "round 1 done"]
    assert lines[-2].startswith("summary: ")  # a table search registers no model: no refit phase
    assert lines[-1].startswith("history: ")  # the finished search recorded in the task history
    assert "depth=" in trials[0] and "(estimate from" in trials[-1]


@pytest.mark.slow
def test_a_text_search_announces_refit_and_registration(tmp_path, monkeypatch, samples_dir, feature_cache_dir,
                                                        tiny_text_space):
    monkeypatch.chdir(tmp_path)
    space = tiny_text_space
    stream = io.StringIO()
    run_search(SearchSettings(tasks=("mpqa",), trials=2, out=str(tmp_path / "run"), space=str(space),
                              data_dir=str(samples_dir), cache_dir=str(feature_cache_dir), budget_scale=0.01,
                              search_id="phases"), stream=stream)  # its own MLflow store: registers mpqa
    lines = stream.getvalue().splitlines()
    phases = [line.split(":")[0] for line in lines if not line.startswith(("trial ", "round "))]
    # one refit line per candidate: --refit topk with k 3, and the task has 2 trials
    assert phases == ["summary", "history", "refit", "refit", "registration"], stream.getvalue()


def test_search_report_is_the_last_phase_and_an_existing_file_is_refused_first(tmp_path, toy_table, capsys):
    args = ["search", "--table", str(toy_table), "--metric-columns", "t1,t2", "--trials", "4", "--method", "rs",
            "--out", str(tmp_path / "s"), "--report", str(tmp_path / "s.html")]
    assert main(args) == 0
    captured = capsys.readouterr()
    phases = [line.split(":")[0] for line in captured.err.splitlines() if not line.startswith(("trial ", "round "))]
    assert phases == ["summary", "history", "report"]
    assert "<html" in (tmp_path / "s.html").read_text().lower() and f"report:     {tmp_path / 's.html'}" in captured.out
    before = (tmp_path / "s.html").read_bytes()
    args[args.index("--out") + 1] = str(tmp_path / "t")
    assert main(args) == 2  # refused before a trial runs: nothing of the second search is written
    assert "--report" in capsys.readouterr().err and not (tmp_path / "t").exists()
    assert (tmp_path / "s.html").read_bytes() == before

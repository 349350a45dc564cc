"""The quality benchmark's report: rows from result files, the champion, the count, the page."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from transfer_automl.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks/ is imported from the checkout (it is not in the wheel)

from benchmarks.quality import QualitySettings, config_summary, paper_top10, read_rows, render  # noqa: E402

CONFIG = {"input_module": "glove-6b-50d", "fine_tune": False, "hidden_layers": 2, "hidden_size": 256,
          "activation": "relu", "normalization": "layer", "dropout": 0.1, "deep_lr": 0.1, "deep_reg": 0.0001,
          "wide_lr": 1.0, "wide_reg": 0.0, "training_samples": 1000000}


def _write(folder: Path, name: str, value: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(value))


def _task(out: Path, task: str, tfidf: float, search_best: tuple[float, float], refit: dict | None) -> None:
    folder = out / task
    _write(folder, "baseline.json", {"task": task, "val": 0.8, "C": 10.0, "test": tfidf, "majority_test": 0.5,
                                     "wall_s": 1.0, "cpu_s": 1.0})
    wide_only = {**CONFIG, "deep_reg": "disable_deep_tower", "wide_lr": 3.0}
    _write(folder, "search.json", {
        "task": task, "wall_s": 180.0, "cpu_s": 150.0, "stopped": "time budget", "trials": 30, "configurations": 20,
        "promotions": 10, "statuses": {"ok": 30},
        "best": {"trial_id": "s/0/1", "val_accuracy": search_best[0], "test_accuracy": search_best[1], "budget": 1.0,
                 "config": CONFIG},
        "configs": {"s/0/1": CONFIG, "s/0/2": wide_only}})
    if refit is not None:
        _write(folder, "refit.json", {"task": task, "k": 2, "wall_s": 60.0, "cpu_s": 55.0, **refit})


def _refit(champion: str, val: float, test: float) -> dict:
    candidates = [{"trial_id": t, "search_val_accuracy": 0.8, "search_test_accuracy": 0.7, "refit_val_accuracy": v,
                   "refit_test_accuracy": x, "steps": 4000, "max_steps": 10000, "cost_s": 20.0}
                  for t, v, x in (("s/0/1", 0.80, 0.95), ("s/0/2", 0.85, 0.80))]
    return {"champion_trial_id": champion, "champion_val_accuracy": val, "champion_test_accuracy": test,
            "candidates": candidates}


def test_rows_take_the_refit_champion_and_count_ties_as_wins(tmp_path):
    _task(tmp_path, "sst2", tfidf=0.80, search_best=(0.82, 0.70), refit=_refit("s/0/2", 0.85, 0.80))
    _task(tmp_path, "mpqa", tfidf=0.86, search_best=(0.90, 0.90), refit=_refit("s/0/2", 0.85, 0.80))
    rows = read_rows(tmp_path, ["sst2", "mpqa", "brown"])  # brown has no results yet: left out
    assert [r["task"] for r in rows] == ["sst2", "mpqa"]
    sst2, mpqa = rows
    # the refit's champion (picked by refit validation), not the search's best or the best refit test
    assert sst2["champion"]["source"] == "refit" and sst2["champion"]["trial_id"] == "s/0/2"
    assert sst2["champion"]["test"] == 0.80 and sst2["champion"]["config"]["deep_reg"] == "disable_deep_tower"
    assert sst2["beats"] is True  # 0.80 >= 0.80: "at least" TF-IDF's
    assert mpqa["beats"] is False  # refit 0.80 < 0.86, although the search's best child had 0.90
    page = render(rows, QualitySettings(refit="topk", refit_k=2), "python -m benchmarks.quality", [
        {"started": "2026-12-05 13:00 UTC", "wall_s": 600.0}], "test machine")
    assert "at least TF-IDF + LR's on 1 of 2 tasks** (the goal, 12 of the 14 tasks, needs all of them)" in page
    assert "| sst2 | 80.0 | 80.0 (10) | 83.4 (T4) | 50.0 | yes | wide lr 3 L1 0; 1,000,000 samples (4,000 steps)" in page
    assert "| mpqa | 80.0 | 86.0 (10) | 88.5 (T3) | 50.0 | **no** |" in page
    assert "10 min wall from the first run's start to the last one's end, in 1 run(s)" in page and "`make bench-quality`, i.e. `python -m benchmarks.quality`" in page and '`refit_champions(search_dir, "topk", 2)`' in page


def test_an_ensemble_champion_shows_its_size_and_a_refit_of_another_mode_or_k_runs_again(tmp_path):
    from benchmarks.quality import _refit_done

    refit = {**_refit("s/0/1", 0.86, 0.83), "ensemble_trial_ids": ["s/0/1", "s/0/2"], "mode": "ensemble"}
    _task(tmp_path, "sst2", tfidf=0.83, search_best=(0.82, 0.70), refit=refit)
    (row,) = read_rows(tmp_path, ["sst2"])
    assert row["champion"]["test"] == 0.83 and row["champion"]["members"] == 2 and row["beats"]
    page = render([row], QualitySettings(refit_k=2), "cmd", [{"started": "2026-12-05 13:00 UTC", "wall_s": 60.0}], "m")
    assert "| sst2 | 83.0 | 83.0 (10) | 83.4 (T4) | 50.0 | yes | ensemble of 2; its first: glove-6b-50d" in page
    assert '`refit_champions(search_dir, "ensemble", 2)`' in page and "averaging their class probabilities" in page
    done = tmp_path / "sst2" / "refit.json"
    assert _refit_done(done, QualitySettings(refit_k=2))
    assert not _refit_done(done, QualitySettings(refit_k=5)) and not _refit_done(done, QualitySettings(refit="topk", refit_k=2))
    _task(tmp_path, "mpqa", tfidf=0.8, search_best=(0.8, 0.8), refit=_refit("s/0/2", 0.85, 0.80))  # no mode: topk
    assert _refit_done(tmp_path / "mpqa" / "refit.json", QualitySettings(refit="topk", refit_k=2))


def test_without_a_refit_the_champion_is_the_searchs_best_by_validation(tmp_path):
    _task(tmp_path, "political_social_media", tfidf=0.77, search_best=(0.79, 0.78), refit=None)
    (row,) = read_rows(tmp_path, ["political_social_media"])
    assert row["champion"]["source"] == "search" and row["champion"]["test"] == 0.78 and row["beats"]
    assert row["paper"] is None and row["refit_wall_s"] is None
    runs = [{"started": "2026-12-05 12:41 UTC", "wall_s": 1800.0}, {"started": "2026-12-05 13:00 UTC", "wall_s": 1200.0}]
    page = render([row], QualitySettings(), "cmd", runs, "m")
    assert "39 min wall from the first run's start" in page and "in 2 run(s)" in page  # overlapping runs: the span
    assert "no refit" in page and "| political_social_media | 78.0 (not refit) | 77.0 (10) | - |" in page


def test_config_summary_names_only_the_enabled_towers():
    assert config_summary(CONFIG, 10000) == ("glove-6b-50d (frozen) 2x256 relu/layer drop 0.1, lr 0.1 L2 0.0001; "
                                             "wide lr 1 L1 0; 1,000,000 samples (10,000 steps)")
    assert config_summary({**CONFIG, "wide_reg": "disable_wide_tower"}).endswith("L2 0.0001; 1,000,000 samples")
    assert paper_top10("20newsgroups") == (88.6, "T3") and paper_top10("sst2") == (83.4, "T4")


@pytest.mark.parametrize(("field", "value"), [("time_budget_s", 0.0), ("refit_k", 0), ("workers", 0), ("tasks", ()),
                                              ("refit", "best")])
def test_bad_settings_are_refused_by_name(field, value):
    with pytest.raises(ConfigError, match=field.split("_s")[0] if field != "tasks" else "tasks"):
        QualitySettings(**{field: value})


def test_a_rewritten_page_keeps_the_notes_written_below_the_marker(tmp_path):
    from benchmarks.quality import NOTES_MARKER, write_page

    page = tmp_path / "quality.md"
    write_page(page, "# first\n")
    assert page.read_text() == f"# first\n\n{NOTES_MARKER}\n"
    page.write_text(page.read_text() + "Why 20newsgroups loses: measured.\n")
    write_page(page, "# second\n")
    assert page.read_text() == f"# second\n\n{NOTES_MARKER}\nWhy 20newsgroups loses: measured.\n"


@pytest.mark.parametrize(("args", "named"), [(["--tasks", "sms_spam,nosuchtask"], "nosuchtask"),
                                             (["--time-budget", "0"], "time_budget_s")])
def test_the_command_refuses_bad_input_before_any_work(tmp_path, capsys, args, named):
    from benchmarks.quality import main

    out = tmp_path / "out"
    assert main(["--out", str(out), "--doc", str(tmp_path / "q.md"), *args]) == 2
    assert named in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "q.md").exists()

"""SearchSettings: one description of every setting makes the flags, validates a pipeline's mapping
and decides what a resumed search may change."""

from __future__ import annotations

import argparse
import math
from dataclasses import fields

import pytest

from transfer_automl.errors import ConfigError
from transfer_automl.study import SearchSettings
from transfer_automl.study.settings import add_arguments, check_pipeline_settings, given_settings

NUMERIC = [f for f in fields(SearchSettings) if f.metadata["low"] is not None]
BASE = {"tasks": ["a"], "trials": 4, "out": "runs/x"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    return parser


def test_every_setting_but_progress_has_a_flag_and_help():
    options = {a.dest: a for a in _parser()._actions if a.dest != "help"}
    assert set(options) == {f.name for f in fields(SearchSettings)} - {"progress"}
    assert all(options[name].help for name in options)
    assert options["source"].option_strings == ["--from"]


def test_flags_not_given_stay_out_of_the_settings():
    args = _parser().parse_args(["--trials", "5", "--method-option", "population_size=7", "--tasks", "a,b"])
    assert given_settings(args) == {"trials": 5, "method_options": {"population_size": 7}, "tasks": ("a", "b")}


@pytest.mark.parametrize("f", NUMERIC, ids=lambda f: f.name)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e300, -1e300])
def test_every_numeric_setting_refuses_nan_inf_and_out_of_range(f, bad):
    with pytest.raises(ConfigError, match=f.name):
        SearchSettings.from_mapping({**BASE, f.name: bad})
    flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
    with pytest.raises(argparse.ArgumentError, match=f.name):
        _parser().parse_args([f"{flag}={bad}"])


@pytest.mark.parametrize("f", NUMERIC, ids=lambda f: f.name)
def test_every_numeric_setting_accepts_its_range_ends_when_closed(f):
    meta = f.metadata
    for end, is_open in ((meta["low"], meta["low_open"]), (meta["high"], meta["high_open"])):
        if not is_open and not (f.name == "trials" and end == 10_000_000):
            assert getattr(SearchSettings.from_mapping({**BASE, f.name: end}), f.name) == end


def test_a_mapping_is_typed_and_checked_by_name():
    settings = SearchSettings.from_mapping({**BASE, "seed": "7", "controller_lr": "0.01", "tasks": "a,b",
                                            "method_options": '{"max_grad_norm": 1}'})
    assert (settings.seed, settings.controller_lr, settings.tasks) == (7, 0.01, ("a", "b"))
    for bad, field in (({"sead": 1}, "sead"), ({"seed": "one"}, "seed"), ({"seed": True}, "seed"),
                       ({"method": "magic"}, "method"), ({"normalization": "max"}, "normalization"),
                       ({"method_options": {"nope": 1}}, "nope"), ({"tasks": ["a", "a"]}, "tasks")):
        with pytest.raises(ConfigError, match=field):
            SearchSettings.from_mapping({**BASE, **bad})


def test_resume_keeps_fixed_settings_and_records_free_ones():
    stored = SearchSettings.from_mapping({**BASE, "seed": 3, "search_id": "s"})
    resumed, changes = stored.resumed({"trials": 10, "data_dir": "/data", "seed": 3}, "runs/x")
    assert (resumed.trials, resumed.data_dir, resumed.seed) == (10, "/data", 3)
    assert changes == {"trials": (4, 10), "data_dir": (None, "/data")}
    for changed in ({"seed": 4}, {"method": "pqt"}, {"entropy_weight": 0.1}, {"batch_size": 2},
                    {"method_options": {"max_grad_norm": 1.0}}):
        with pytest.raises(ConfigError, match=f"--resume: {next(iter(changed))} is"):
            stored.resumed(changed, "runs/x")
    with pytest.raises(ConfigError, match="fewer than"):
        stored.resumed({"trials": 2}, "runs/x")


def test_a_pipeline_mapping_may_not_set_what_the_pipeline_shape_sets():
    assert check_pipeline_settings({"seed": "2"}) == {"seed": 2}
    for key in ("trials", "batch_size", "out", "progress"):
        with pytest.raises(ConfigError, match=f"'{key}'.*set by the pipeline"):
            check_pipeline_settings({key: 1})


def test_the_benchmark_flag_offers_exactly_the_registered_benchmarks():
    from transfer_automl.study.settings import BENCHMARKS
    from transfer_automl.tasks.benchmarks import BENCHMARKS as REGISTERED

    assert sorted(BENCHMARKS) == sorted(REGISTERED)

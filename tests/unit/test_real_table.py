"""The real-task table: build a tiny one for real, read it back through the benchmark loader."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from transfer_automl.errors import TaskError
from transfer_automl.space.decisions import Decision, SearchSpace
from transfer_automl.tasks.benchmarks import load_benchmark

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks/ is imported from the checkout (it is not in the wheel)

from benchmarks.real_table import (  # noqa: E402
    REAL_SPACE,
    BuildSettings,
    all_configs,
    build_table,
    network_key,
    top_n_curves,
)

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "transfer_automl" / "tasks" / "samples" / "sms_spam.parquet"

# Two configurations: a wide & deep child and a wide-only one (deep_reg mixes a float and a
# string, so the Parquet column is text and the loader must map it back to the choices).
TINY = SearchSpace("tiny-real", tuple(
    Decision(d.name, {
        "input_module": ("random-hashed-64",), "fine_tune": (False,), "hidden_layers": (1,), "hidden_size": (8,),
        "activation": ("relu",), "normalization": ("none",), "dropout": (0.0,), "deep_lr": (0.3,),
        "deep_reg": (0.0001, "disable_deep_tower"), "wide_lr": (0.3,), "wide_reg": (0.0001,),
        "training_samples": (1000,),
    }[d.name]) for d in REAL_SPACE.decisions
))


def _settings(tmp_path: Path, **overrides) -> BuildSettings:
    return BuildSettings(tasks=(str(SAMPLE),), out=str(tmp_path / "taml_text_real.parquet"),
                         work_dir=str(tmp_path / "work"), workers=1, space=TINY, **overrides)


def test_tiny_table_builds_loads_resumes_and_refuses_other_settings(tmp_path, capsys):
    settings = _settings(tmp_path)
    build_table(settings)
    bench = load_benchmark("taml-text-real", data_dir=tmp_path)
    assert bench.name == "tiny-real" and bench.tasks == ["sms_spam"] and bench.num_rows == 2
    raw = pq.read_table(settings.out).to_pydict()
    assert raw["deep_reg"] == ["0.0001", "disable_deep_tower"]
    for row, deep_reg in enumerate((0.0001, "disable_deep_tower")):
        actions = bench.space.encode({**all_configs(TINY)[row], "deep_reg": deep_reg})
        assert bench.value("sms_spam", actions) == raw["sms_spam/val"][row]
        assert bench.test_value("sms_spam", actions) == raw["sms_spam/test"][row]
    values = bench.all_values("sms_spam")
    assert ((values > 0.5) & (values <= 1.0)).all()  # trained children beat chance on spam/ham

    capsys.readouterr()
    build_table(settings)  # a rerun trains nothing and rewrites the same table
    assert "sms_spam: already complete, nothing to train" in capsys.readouterr().out
    assert pq.read_table(settings.out).to_pydict() == raw

    before = Path(settings.out).read_bytes()  # partial results of another setting are refused
    with pytest.raises(TaskError, match="another space or trainer setting"):
        build_table(_settings(tmp_path, budget_scale=0.5))
    assert Path(settings.out).read_bytes() == before


def test_configurations_that_build_the_same_network_share_a_key():
    configs = all_configs(REAL_SPACE)
    assert len(configs) == REAL_SPACE.size() == 768
    keys = {network_key(c, 1.0, 100) for c in configs}
    # deep & wide: 3*2*2*2*2*2 deep x 2 wide_lr; deep only: 96; wide only: 2 wide_lr; neither: 1
    assert len(keys) == 192 + 96 + 2 + 1
    wide_only = [c for c in configs if c["deep_reg"] == "disable_deep_tower" and c["wide_reg"] == 0.0001]
    assert len({network_key(c, 1.0, 100) for c in wide_only}) == 2
    changed = {**configs[0], "hidden_size": 256}
    assert network_key(changed, 1.0, 100) != network_key(configs[0], 1.0, 100)


def test_top_n_curves_count_each_configuration_once():
    val = np.array([0.9, 0.5, 0.7, 0.8])
    test = np.array([0.8, 0.4, 0.6, 0.9])
    v, t = top_n_curves([0, 0, 1, 2, 3], val, test, n=2)
    assert np.isnan(v[:2]).all()  # one distinct configuration only, even after two trials
    assert v[2] == pytest.approx(0.7) and t[2] == pytest.approx(0.6)
    assert v[4] == pytest.approx(0.85) and t[4] == pytest.approx(0.85)
    assert not any(math.isnan(x) for x in v[2:])


def test_settings_reject_bad_values(tmp_path):
    from transfer_automl.errors import ConfigError

    with pytest.raises(ConfigError, match="workers"):
        replace(_settings(tmp_path), workers=0).validate()
    with pytest.raises(ConfigError, match="tasks"):
        replace(_settings(tmp_path), tasks=()).validate()


def _synthetic_table(directory: Path, tasks: list[str]) -> None:
    """A taml-text-real table with made-up accuracies: the searches only look values up."""
    import pyarrow as pa

    from benchmarks.real_table import _cell, _encode_meta

    rng = np.random.default_rng(0)
    configs = all_configs(REAL_SPACE)
    columns = {n: [_cell(c[n], d) for c in configs] for n, d in zip(REAL_SPACE.names, REAL_SPACE.decisions, strict=True)}
    shared = rng.random(len(configs))
    for task in tasks:
        val = 0.5 + 0.4 * (0.8 * shared + 0.2 * rng.random(len(configs)))
        columns[f"{task}/val"], columns[f"{task}/test"] = val, val - 0.01
    meta = {"name": "taml-text-real", "space": REAL_SPACE.to_dict(), "tasks": tasks}
    pq.write_table(pa.table(columns).replace_schema_metadata(_encode_meta(meta)), directory / "taml_text_real.parquet")


@pytest.mark.slow
def test_compare_searches_reports_tables_two_and_three(tmp_path):
    from benchmarks.real_table import CompareSettings, compare_searches, render_report

    _synthetic_table(tmp_path, ["sms_spam", "mpqa"])
    settings = CompareSettings(out=str(tmp_path / "out"), seeds=2, trials=30, budget=20, pretrain_trials_per_task=20,
                               workers=1, data_dir=str(tmp_path))
    summary = compare_searches(settings, log=lambda line: None)
    curves = pq.read_table(tmp_path / "out" / "curves.parquet").to_pylist()
    assert len(curves) == 2 * 2 * 4  # seeds x tasks x methods
    assert all(len(c["rows"]) == 30 for c in curves)
    for task in ("sms_spam", "mpqa"):
        rs = [c for c in curves if c["task"] == task and c["method"] == "rs"]
        target = summary["tasks"][task]["target_val_top"]
        assert target == pytest.approx(float(np.median([c["val_top"][-1] for c in rs])))
        for entry in summary["tasks"][task]["methods"].values():
            assert 0.5 <= entry["test_top_at_budget_mean"] <= 0.9
    report = render_report(summary, {"sms_spam": {"test": 0.99, "majority_test": 0.87}})
    assert "| sms_spam |" in report and "4815" in report  # the paper's RS trials beside ours
    assert "**no**" in report  # the synthetic table never beats 99 % on sms_spam

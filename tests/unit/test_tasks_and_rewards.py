from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transfer_automl.errors import TaskError
from transfer_automl.rewards import accuracy_top_n, reward_from_accuracy
from transfer_automl.tasks import load_task, load_text_task


def _write(path, texts, labels, splits=None):
    pq.write_table(pa.table({"text": texts, "label": labels, "split": splits or [None] * len(texts)}), path)
    return path


def test_null_splits_are_split_80_10_10_with_a_fixed_seed(shared_text):
    a = load_task("customer_reviews", shared_text)
    b = load_task("customer_reviews", shared_text)
    n = len(a.texts)
    sizes = {k: len(v) for k, v in a.splits.items()}
    assert sizes["train"] == round(0.8 * n) and abs(sizes["validation"] - round(0.1 * n)) <= 1
    assert sum(sizes.values()) == n
    for split in a.splits:
        assert np.array_equal(a.splits[split], b.splits[split])
    assert not set(a.splits["train"]) & set(a.splits["test"])


def test_given_splits_are_kept_and_validation_is_held_out_of_train(tmp_path):
    texts = [f"text {i}" for i in range(40)]
    labels = ["a", "b"] * 20
    splits = ["train"] * 30 + ["test"] * 10
    task = load_text_task(_write(tmp_path / "t.parquet", texts, labels, splits))
    assert len(task.splits["test"]) == 10 and set(task.splits["test"]) == set(range(30, 40))
    assert len(task.splits["validation"]) == 3 and len(task.splits["train"]) == 27


@pytest.mark.parametrize("case, message", [
    ("missing_column", "lacks column"),
    ("empty", "no rows"),
    ("one_class", "only one class"),
    ("not_parquet", "not a readable Parquet"),
    ("bad_split", "column 'split' has value"),
    ("label_not_in_train", "not in 'train'"),
    ("null_text", "column 'text' is null"),
])
def test_malformed_task_files_name_the_file_and_problem(tmp_path, case, message):
    path = tmp_path / f"{case}.parquet"
    if case == "missing_column":
        pq.write_table(pa.table({"text": ["a", "b"], "label": ["x", "y"]}), path)
    elif case == "empty":
        pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string()),
                                 "split": pa.array([], pa.string())}), path)
    elif case == "one_class":
        _write(path, ["a"] * 20, ["x"] * 20)
    elif case == "not_parquet":
        path.write_bytes(b"\xff\xfe not parquet at all")
    elif case == "bad_split":
        _write(path, ["a", "b"] * 10, ["x", "y"] * 10, ["train", "dev"] * 10)
    elif case == "label_not_in_train":
        _write(path, ["a"] * 12, ["x", "y"] * 5 + ["z", "z"], ["train", "train"] * 4 + ["validation", "test"] * 2)
    elif case == "null_text":
        _write(path, ["a", None] * 10, ["x", "y"] * 10)
    with pytest.raises(TaskError) as err:
        load_text_task(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_unknown_task_name_lists_the_known_ones(samples_dir):
    with pytest.raises(TaskError, match=r"unknown task 'nope'.*mpqa"):
        load_task("nope", samples_dir)


def test_rewards_and_accuracy_top_n():
    assert reward_from_accuracy(0.5) == 0.5
    assert math.isclose(reward_from_accuracy(0.5, power=3), 0.125)
    val = [0.9, 0.5, 0.7, 0.9]
    test = [0.8, 0.1, 0.6, 0.7]
    assert math.isclose(accuracy_top_n(val, test, n=2), (0.8 + 0.7) / 2)
    assert math.isclose(accuracy_top_n(val, test, n=3), (0.8 + 0.7 + 0.6) / 3)
    assert math.isclose(accuracy_top_n(val, test, n=10), sum(test) / 4)
    assert math.isnan(accuracy_top_n([], []))


def test_summaries_count_only_children_that_trained():
    from transfer_automl.rewards.summary import TaskHistory, summarize
    from transfer_automl.study.backends import Reference

    rows = [
        {"task": "t", "status": "ok", "val_accuracy": 0.7, "test_accuracy": 0.6, "config": '{"a": 1}'},
        {"task": "t", "status": "invalid", "val_accuracy": 0.0, "test_accuracy": 0.0, "config": '{"a": 2}'},
        {"task": "t", "status": "ok", "val_accuracy": 0.9, "test_accuracy": 0.8, "config": '{"a": 3}'},
        {"task": "u", "status": "ok", "val_accuracy": 1.0, "test_accuracy": 1.0, "config": '{"a": 4}'},
    ]
    (summary,) = summarize(rows, ["t"], {"t": Reference("majority class", 0.5, 0.4)}, top_n=10)
    assert (summary.reference, summary.reference_val, summary.reference_test) == ("majority class", 0.5, 0.4)
    assert (summary.trials, summary.trained) == (3, 2)
    assert (summary.best_val_accuracy, summary.best_test_accuracy, summary.best_config) == (0.9, 0.8, {"a": 3})
    assert math.isclose(summary.accuracy_top_n, 0.7)  # (0.6 + 0.8) / 2: the invalid child is left out
    history = TaskHistory(rows[:2])
    assert history.metrics("t", 10) == {"reward/t/best_val_accuracy": 0.7, "reward/t/accuracy_top10": 0.6}
    history.add(rows[2:3])
    assert history.metrics("t", 1)["reward/t/accuracy_top1"] == 0.8
    assert history.metrics("nothing-yet", 10) == {}

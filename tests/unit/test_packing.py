"""Packed training (children/packing.py) ends where one-at-a-time training ends.

Same-shape children with different learning rates, regularization, steps, seeds and towers train
stacked in one pass; each must reach the weights and accuracies TextChildTrainer reaches alone
(dropout is 0 here: packed dropout masks come from another random stream).
"""

from __future__ import annotations

import pytest
import torch

from transfer_automl.children.packing import PackedTextTrainer
from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
from transfer_automl.tasks import load_task
from transfer_automl.tasks.features import FeatureCache

BASE = dict(
    input_module="random-hashed-64", fine_tune=False, hidden_layers=2, hidden_size=16, activation="relu",
    normalization="none", dropout=0.0, deep_lr=0.1, deep_reg=0.0, wide_lr=0.1, wide_reg="disable_wide_tower",
    training_samples=10000,  # 5 steps at budget scale 0.05
)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    return TextChildTrainer(ChildTrainerConfig(budget_scale=0.05), FeatureCache(tmp_path_factory.mktemp("f")))


@pytest.fixture(scope="module")
def tasks(samples_dir):
    return load_task("mpqa", samples_dir), load_task("customer_reviews", samples_dir)


def _state(model):
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_packed_children_match_one_at_a_time(trainer, tasks, norm):
    mpqa, reviews = tasks
    configs = [
        ({**BASE, "normalization": norm}, mpqa, 1),
        ({**BASE, "normalization": norm, "deep_lr": 0.03, "deep_reg": 0.01, "activation": "relu"}, mpqa, 2),
        ({**BASE, "normalization": norm, "training_samples": 3000}, reviews, 3),  # fewer steps, other task
        ({**BASE, "normalization": norm, "deep_lr": 1.0, "deep_reg": 0.001}, reviews, 4),
    ]
    alone = [trainer.train(c, t, seed=s, keep_model=True) for c, t, s in configs]
    packed_trainer = PackedTextTrainer(trainer, keep_models=True)
    packed = packed_trainer.train_many(configs)
    for a, p in zip(alone, packed, strict=True):
        assert a.status == p.status == "ok", (a.error, p.error)
        assert p.train_steps == a.train_steps
        sa, sp = _state(a.model), _state(p.model)  # weights and batch-norm running statistics
        for name in sa:
            assert torch.allclose(sa[name].float(), sp[name].float(), atol=1e-4, rtol=1e-4), name
        assert p.val_accuracy == pytest.approx(a.val_accuracy, abs=0.011)  # at most one flipped prediction
        assert p.test_accuracy == pytest.approx(a.test_accuracy, abs=0.011)
    assert len(packed_trainer.last_pack_sizes) == 1 and packed_trainer.last_pack_sizes[0] == 4


def test_packed_weights_equal_alone_weights_with_wide_towers_and_swish(trainer, tasks):
    mpqa, reviews = tasks
    configs = [
        ({**BASE, "activation": "swish", "wide_reg": 0.001, "wide_lr": 0.3}, mpqa, 5),
        ({**BASE, "activation": "swish", "wide_reg": 0.0, "training_samples": 3000}, reviews, 6),
        ({**BASE, "activation": "swish", "wide_reg": 0.01, "deep_lr": 0.01}, mpqa, 7),
    ]
    alone = [trainer.train(c, t, seed=s, keep_model=True).model for c, t, s in configs]
    packer = PackedTextTrainer(trainer, keep_models=True)
    packed = packer.train_many(configs)
    for a, p in zip(alone, packed, strict=True):
        sa, sp = _state(a), _state(p.model)
        assert sa.keys() == sp.keys()
        for name in sa:
            assert torch.allclose(sa[name], sp[name], atol=1e-5, rtol=1e-4), name
        assert int((sp["wide.weight"] == 0).sum()) > 0  # the L1 step zeroed weights, as alone


def test_tfidf_wide_towers_pack_apart_from_binary_ones_and_match_alone(trainer, tasks):
    mpqa, reviews = tasks
    configs = [
        ({**BASE, "wide_reg": 0.0, "wide_lr": 3.0, "wide_features": "tfidf"}, mpqa, 8),
        ({**BASE, "wide_reg": 0.0001, "wide_lr": 1.0, "wide_features": "tfidf"}, reviews, 9),
        ({**BASE, "wide_reg": 0.0, "wide_lr": 3.0, "wide_features": "binary"}, mpqa, 8),
    ]
    alone = [trainer.train(c, t, seed=s, keep_model=True) for c, t, s in configs]
    packer = PackedTextTrainer(trainer, keep_models=True)
    packed = packer.train_many(configs)
    assert sorted(packer.last_pack_sizes) == [1, 2]  # binary bags carry no weights: another pack
    for a, p in zip(alone, packed, strict=True):
        sa, sp = _state(a.model), _state(p.model)
        for name in sa:
            assert torch.allclose(sa[name], sp[name], atol=1e-5, rtol=1e-4), name
    # Same seed and learning rate, other features: the wide towers' rows differ (bigrams, weights).
    assert alone[0].model.wide.weight.shape[0] > alone[2].model.wide.weight.shape[0]


def test_a_diverging_child_does_not_stop_its_pack(trainer, tasks):
    mpqa, _ = tasks
    configs = [({**BASE, "deep_lr": 3.0e12, "hidden_layers": 2, "hidden_size": 16, "training_samples": 100000}, mpqa, 0),
               ({**BASE, "training_samples": 100000}, mpqa, 1)]
    alone = trainer.train(*configs[1][:2], seed=1)
    bad, good = PackedTextTrainer(trainer).train_many(configs)
    assert bad.status == "diverged" and "non-finite" in bad.error and bad.val_accuracy == 0.0
    assert good.status == "ok" and good.val_accuracy == pytest.approx(alone.val_accuracy, abs=0.011)


def test_unpackable_children_take_the_plain_path(trainer, tasks):
    mpqa, _ = tasks
    configs = [({**BASE, "fine_tune": True}, mpqa, 0), ({**BASE, "deep_reg": "disable_deep_tower"}, mpqa, 0),
               ({**BASE, "hidden_size": 32}, mpqa, 0), (BASE, mpqa, 0)]
    packer = PackedTextTrainer(trainer)
    results = packer.train_many(configs)
    assert [r.status for r in results] == ["ok", "invalid", "ok", "ok"]
    assert sorted(packer.last_pack_sizes) == [1, 1]  # two shapes: 32 wide and 16 wide


def test_a_pack_past_the_trial_timeout_times_out_its_unfinished_children(tasks, tmp_path):
    mpqa, _ = tasks
    slow = TextChildTrainer(ChildTrainerConfig(budget_scale=0.05, timeout_s=1e-9), FeatureCache(tmp_path))
    results = PackedTextTrainer(slow).train_many([(BASE, mpqa, 0), ({**BASE, "deep_lr": 0.3}, mpqa, 1)])
    assert [r.status for r in results] == ["timeout", "timeout"]
    assert all("trial timeout" in r.error and r.val_accuracy == 0.0 for r in results)

from __future__ import annotations

import numpy as np
import pytest
import torch

from transfer_automl.children.embeddings import MODULES, get_module
from transfer_automl.children.spec import child_spec
from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
from transfer_automl.errors import ConfigError, SearchSpaceError, StorageError
from transfer_automl.tasks import load_task
from transfer_automl.tasks.features import FeatureCache

BASE = dict(
    input_module="glove-6b-50d", fine_tune=False, hidden_layers=1, hidden_size=64, activation="relu",
    normalization="none", dropout=0.0, deep_lr=0.1, deep_reg=0.0, wide_lr=0.1, wide_reg="disable_wide_tower",
    training_samples=300000,
)


@pytest.fixture(scope="module")
def trainer(feature_cache_dir):
    return TextChildTrainer(ChildTrainerConfig(budget_scale=0.05), FeatureCache(feature_cache_dir))


@pytest.fixture(scope="module")
def mpqa(shared_text):
    return load_task("mpqa", shared_text)


def test_child_on_a_real_task_beats_the_majority_class(trainer, mpqa):
    result = trainer.train(BASE, mpqa, seed=1)
    assert result.status == "ok", result.error
    assert result.train_steps == 150  # 300000 samples / 100 per batch * 0.05
    assert result.val_accuracy > mpqa.majority_accuracy("validation") + 0.1
    assert result.test_accuracy > mpqa.majority_accuracy("test") + 0.1


def test_fine_tuning_trains_the_embedding_table(trainer, mpqa):
    frozen = trainer.train(BASE, mpqa, seed=1)
    tuned = trainer.train({**BASE, "fine_tune": True}, mpqa, seed=1)
    assert tuned.status == "ok"
    assert tuned.val_accuracy != frozen.val_accuracy or tuned.test_accuracy != frozen.test_accuracy
    assert tuned.val_accuracy > mpqa.majority_accuracy("validation")


def test_wide_tower_alone_and_every_norm_and_activation_train(trainer, mpqa):
    wide = trainer.train({**BASE, "deep_reg": "disable_deep_tower", "wide_reg": 0.0001}, mpqa, seed=1)
    assert wide.status == "ok" and wide.val_accuracy > mpqa.majority_accuracy("validation")
    for norm in ("batch", "layer"):
        r = trainer.train({**BASE, "normalization": norm, "activation": "swish", "dropout": 0.3,
                           "hidden_layers": 3, "training_samples": 10000}, mpqa, seed=2)
        assert r.status == "ok", r.error
        assert 0.0 <= r.val_accuracy <= 1.0


def test_same_seed_same_result(trainer, mpqa):
    config = {**BASE, "wide_reg": 0.001, "training_samples": 30000}
    assert trainer.train(config, mpqa, seed=3).val_accuracy == trainer.train(config, mpqa, seed=3).val_accuracy


def test_unbuildable_configurations_are_invalid_not_trained(trainer, mpqa):
    both_off = trainer.train({**BASE, "deep_reg": "disable_deep_tower"}, mpqa)
    assert both_off.status == "invalid" and "both" in both_off.error and both_off.train_steps == 0
    frozen_only = trainer.train({**BASE, "input_module": "me5-small", "fine_tune": True}, mpqa)
    assert frozen_only.status == "invalid" and "'me5-small' cannot be fine-tuned" in frozen_only.error
    assert frozen_only.train_steps == 0


def test_diverging_child_is_recorded_not_raised(trainer, mpqa):
    # A huge learning rate on a deep, unnormalized net drives the loss to inf/nan.
    config = {**BASE, "deep_lr": 3.0e12, "hidden_layers": 7, "hidden_size": 256, "training_samples": 100000}
    result = trainer.train(config, mpqa, seed=0)
    assert result.status == "diverged"
    assert "non-finite" in result.error and result.val_accuracy == 0.0 and result.test_accuracy == 0.0


def test_an_error_inside_a_child_fails_it_with_the_reason(feature_cache_dir, mpqa, monkeypatch):
    def broken(texts):
        raise KeyError("token table row 12 missing (simulated)")

    monkeypatch.setattr(get_module("random-hashed-64"), "table_input", broken)
    trainer = TextChildTrainer(ChildTrainerConfig(), FeatureCache(feature_cache_dir))  # nothing memoised
    result = trainer.train({**BASE, "input_module": "random-hashed-64", "fine_tune": True}, mpqa)
    assert result.status == "failed" and "KeyError" in result.error and "simulated" in result.error
    assert result.val_accuracy == 0.0 and result.test_accuracy == 0.0


def test_the_searchs_own_errors_are_not_swallowed_as_a_failed_child(trainer, mpqa, monkeypatch):
    def outage(*args, **kwargs):
        raise StorageError("feature cache unreachable (simulated)")

    monkeypatch.setattr(trainer.cache, "get", outage)
    with pytest.raises(StorageError, match="unreachable"):
        trainer.train({**BASE, "input_module": "random-hashed-64"}, mpqa)


@pytest.mark.slow
def test_pretrained_sentence_encoder_child_and_feature_cache(samples_dir, tmp_path):
    task = load_task("mpqa", samples_dir)
    cache = FeatureCache(tmp_path)
    trainer = TextChildTrainer(ChildTrainerConfig(), cache)
    config = {**BASE, "input_module": "all-minilm-l6-v2", "hidden_size": 32}
    result = trainer.train(config, task, seed=0)
    assert result.status == "ok", result.error
    assert result.val_accuracy > task.majority_accuracy("validation")
    entry = cache.path(task, "all-minilm-l6-v2")
    assert entry.is_file() and np.load(entry).shape == (len(task.texts), 384)
    assert cache.computed == 1
    # A new process-level cache reads the stored features instead of embedding again.
    fresh = FeatureCache(tmp_path)
    features = fresh.get(task, "all-minilm-l6-v2", lambda texts: pytest.fail("recomputed a cached entry"))
    assert fresh.computed == 0 and features.shape == (len(task.texts), 384)


@pytest.mark.slow
def test_fine_tuning_a_sentence_encoder_trains_a_private_copy_on_the_fly(samples_dir, tmp_path):
    task = load_task("mpqa", samples_dir)
    cache = FeatureCache(tmp_path)
    trainer = TextChildTrainer(ChildTrainerConfig(), cache)
    config = {**BASE, "input_module": "all-minilm-l6-v2", "fine_tune": True, "hidden_size": 32,
              "deep_lr": 0.03, "training_samples": 1000}  # 1 step at budget scale 0.05
    result = trainer.train(config, task, seed=0, keep_model=True)
    assert result.status == "ok", result.error
    assert result.train_steps == 1 and 0.0 <= result.val_accuracy <= 1.0
    assert cache.computed == 0 and not any(tmp_path.iterdir())  # nothing cached for fine-tuned children
    shared = get_module("all-minilm-l6-v2")._model
    tuned = result.model.encoder.inner
    assert tuned is not shared
    name, weight = next((n, p) for n, p in tuned.named_parameters() if "query.weight" in n)
    assert not torch.equal(weight.detach().cpu(), dict(shared.named_parameters())[name].detach().cpu())


def test_mnms_configurations_map_to_a_deep_relu_network():
    spec = child_spec({"embedding_table": "glove-6b-50d", "trainable": True, "layers": 3, "nodes": 50,
                       "learning_rate": 0.05, "iterations": 5000, "l2": 0.001}, budget_scale=0.01, batch_size=100)
    assert (spec.hidden_layers, spec.hidden_size, spec.deep_lr, spec.deep_l2) == (3, 50, 0.05, 0.001)
    assert spec.fine_tune and spec.use_deep and not spec.use_wide and spec.train_steps == 50


def test_budget_scale_sets_training_steps():
    assert child_spec(BASE, budget_scale=1.0, batch_size=100).train_steps == 3000
    assert child_spec({**BASE, "training_samples": 1000}, budget_scale=0.05, batch_size=100).train_steps == 1


def test_unknown_decisions_are_rejected():
    with pytest.raises(SearchSpaceError, match="unknown decision"):
        child_spec({**BASE, "kernel_size": 3}, budget_scale=1.0, batch_size=100)


def test_module_registry():
    assert {"glove-6b-50d", "all-minilm-l6-v2", "random-hashed-64"} <= set(MODULES)
    assert get_module("glove-6b-50d").fine_tunable and get_module("all-minilm-l6-v2").fine_tunable
    assert not get_module("me5-small").fine_tunable and not get_module("use-multilingual-v3").fine_tunable
    assert all(m.is_installed() for m in MODULES.values())
    with pytest.raises(ConfigError, match="unknown input module 'nope'"):
        get_module("nope")


def test_word_table_features_are_the_mean_of_token_vectors():
    glove = get_module("glove-6b-50d")
    index, vectors = glove._table
    features = glove.features(["the cat", "zzzqqq", ""])
    expected = (vectors[index["the"]] + vectors[index["cat"]]) / 2
    assert np.allclose(features[0], expected, atol=1e-6)
    assert not features[1].any() and not features[2].any()  # out-of-vocabulary and empty texts


def test_tfidf_wide_features_weigh_word_grams_by_the_train_splits_idf():
    from transfer_automl.children.tokens import stable_hash, wide_bags

    texts = ["good movie", "bad movie", "good good plot", "unseen words here"]
    buckets = 1 << 20
    wide = wide_bags(texts, buckets, "tfidf", train_rows=np.array([0, 1, 2]))
    row = {int(b): i for i, b in enumerate(wide.buckets)}
    ids, _ = wide.bags.select(np.array([2]))
    weights = dict(zip(ids.tolist(), wide.bags.select_weights(np.array([2])).tolist(), strict=True))
    # "good good plot": grams good (twice), plot, "good good", "good plot"; idf from 3 train texts.
    idf = {g: np.log(4 / (1 + df)) + 1 for g, df in {"good": 2, "plot": 1, "good good": 1, "good plot": 1}.items()}
    raw = {g: (1 + np.log(2 if g == "good" else 1)) * idf[g] for g in idf}
    norm = np.sqrt(sum(v * v for v in raw.values()))
    for gram, value in raw.items():
        assert weights[row[stable_hash(gram) % buckets]] == pytest.approx(value / norm, rel=1e-6)
    # The test text's words were never in the train split: the IDF of an unseen term, and the
    # train texts' weights do not depend on it.
    assert wide.idf_unseen == pytest.approx(np.log(4) + 1)
    assert wide.idf[row[stable_hash("unseen") % buckets]] == pytest.approx(wide.idf_unseen)
    other = wide_bags([*texts[:3], "something else entirely"], buckets, "tfidf", train_rows=np.array([0, 1, 2]))
    rows = np.array([0, 1, 2])
    assert np.array_equal(other.bags.select_weights(rows), wide.bags.select_weights(rows))
    assert wide_bags(texts, buckets, "binary", np.array([0])).bags.weights is None


def test_a_tfidf_wide_child_trains_and_a_bad_wide_features_value_is_named(trainer, mpqa):
    config = {**BASE, "deep_reg": "disable_deep_tower", "wide_reg": 0.0, "wide_lr": 3.0, "wide_features": "tfidf"}
    result = trainer.train(config, mpqa, seed=1)
    assert result.status == "ok", result.error
    assert result.val_accuracy > mpqa.majority_accuracy("validation") + 0.05
    with pytest.raises(SearchSpaceError, match="'wide_features' must be one of \\['binary', 'tfidf'\\], got 'bm25'"):
        child_spec({**config, "wide_features": "bm25"}, budget_scale=1.0, batch_size=100)

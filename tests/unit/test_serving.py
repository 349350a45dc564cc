"""The champion as a pyfunc model (serving/): its tokenizer copies agree with the trainer's, and a
child exported, saved with MLflow and loaded back predicts what the trainer's child predicts on a
real task's texts (bit for bit for frozen modules)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
import torch

from transfer_automl.children.embeddings import murmurhash64a
from transfer_automl.children.tokens import (
    compact,
    hashed_gram_counts,
    hashed_unigram_bags,
    stable_hash,
    tfidf_weights,
    tokenize,
    wide_bags,
    word_grams,
)
from transfer_automl.serving.export import CODE_FILE

CONFIG = {"input_module": "random-hashed-64", "fine_tune": False, "hidden_layers": 1, "hidden_size": 32,
          "activation": "swish", "normalization": "layer", "dropout": 0.1, "deep_lr": 0.03, "deep_reg": 0.0001,
          "wide_lr": 0.1, "wide_reg": 0.0001, "training_samples": 10000}


def _runtime():
    """serving/champion_model.py loaded as MLflow loads it: a file, not a transfer_automl module."""
    spec = importlib.util.spec_from_file_location("taml_champion_model_under_test", CODE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runtime():
    return _runtime()


def test_the_runtimes_tokenizer_and_hashes_are_the_trainers(runtime, samples_dir):
    import pyarrow.parquet as pq

    texts = pq.read_table(samples_dir / "mpqa.parquet").column("text").to_pylist()[:300]
    texts += ["Ünïcödé — straße, naïve café!", "", "   ", "tabs\tand\nnewlines", "日本語のテキスト", "emoji 🙂🙂 ok"]
    for text in texts:
        assert runtime.tokenize(text) == tokenize(text)
        for token in tokenize(text):
            assert runtime.stable_hash(token) == stable_hash(token)
            assert runtime.murmurhash64a(token.encode()) == murmurhash64a(token.encode())
        assert runtime.word_grams(text) == word_grams(text)
        ours, theirs = hashed_gram_counts(text, 1 << 18), runtime.hashed_gram_counts(text, 1 << 18)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
        idf = np.linspace(1.0, 3.0, len(ours[1]))
        assert np.array_equal(runtime.tfidf_weights(ours[1], idf), tfidf_weights(ours[1], idf))


def test_texts_are_read_from_a_text_column_a_list_or_a_series_and_anything_else_is_named(runtime):
    assert runtime.texts_of(pd.DataFrame({"id": [1, 2], "text": ["a", "b"]})) == ["a", "b"]
    assert runtime.texts_of(["a", "b"]) == ["a", "b"]
    assert runtime.texts_of(pd.Series(["a"])) == ["a"]
    assert runtime.texts_of({"text": ["a", "b"]}) == ["a", "b"]
    with pytest.raises(runtime.ChampionInputError, match=r"no column 'text' \(columns: \['id', 'body'\]\)"):
        runtime.texts_of(pd.DataFrame({"id": [1], "body": ["a"]}))
    with pytest.raises(runtime.ChampionInputError, match="row 1 is float, not a string"):
        runtime.texts_of(["a", 1.5])


@pytest.fixture(scope="module")
def mpqa(shared_text):
    from transfer_automl.tasks import load_task

    return load_task("mpqa", shared_text)


def _trained(config, task, cache_dir):
    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.tasks.features import FeatureCache

    trainer = TextChildTrainer(ChildTrainerConfig(), FeatureCache(cache_dir))
    result = trainer.train(config, task, seed=5, keep_model=True)
    assert result.status == "ok", result.error
    return trainer, result


def _saved(model, task, trainer, tmp_path):
    import mlflow.pyfunc

    from transfer_automl.serving.export import serving_model
    from transfer_automl.tracking.mlflow import save_serving_model

    served = serving_model(model, task, trainer.config.wide_buckets, tmp_path / "bundle")
    save_serving_model(served, tmp_path / "model")
    return served, mlflow.pyfunc.load_model(str(tmp_path / "model"))


def test_a_tfidf_wide_child_served_from_raw_text_predicts_what_the_trainer_does(mpqa, feature_cache_dir, tmp_path):
    """The bundle carries the train split's IDF: served TF-IDF weights are the trainer's, and a
    text with words the task never had is weighted as the trainer weighs an unseen term."""
    config = {**CONFIG, "wide_features": "tfidf", "wide_lr": 3.0, "wide_reg": 0.0}
    trainer, result = _trained(config, mpqa, feature_cache_dir)
    model = result.model.cpu().eval()
    _, loaded = _saved(model, mpqa, trainer, tmp_path)
    rows = mpqa.splits["test"]
    texts = [mpqa.texts[i] for i in rows]
    predicted = loaded.predict(pd.DataFrame({"text": texts}))
    served_accuracy = float((predicted["label"].map(mpqa.classes.index).to_numpy() == mpqa.labels[rows]).mean())
    assert served_accuracy == result.test_accuracy  # the ledger's number, from raw text
    champion = loaded.unwrap_python_model().champion
    wide = wide_bags(mpqa.texts, trainer.config.wide_buckets, "tfidf", mpqa.splits["train"])
    ids, offsets, weights = champion._wide(texts[:50])
    assert np.array_equal(ids.numpy(), wide.bags.select(rows[:50])[0])
    assert np.array_equal(weights.numpy(), wide.bags.select_weights(rows[:50]))
    # Unknown words still count in the L2 norm, with the IDF of a term the train split never had.
    _, _, known_only = champion._wide(["good"])
    _, _, with_unknown = champion._wide(["good zzqxv"])
    assert len(known_only) == len(with_unknown) == 1 and with_unknown[0] < known_only[0]


def test_a_frozen_child_served_from_raw_text_predicts_bit_for_bit_what_the_trainer_does(
        mpqa, feature_cache_dir, tmp_path):
    from transfer_automl.children.embeddings import get_module

    trainer, result = _trained(CONFIG, mpqa, feature_cache_dir)
    model = result.model.cpu().eval()
    served, loaded = _saved(model, mpqa, trainer, tmp_path)
    rows = mpqa.splits["test"]
    texts = [mpqa.texts[i] for i in rows]
    # The trainer's own inputs: cached frozen features and the task's compacted wide bags.
    features = trainer.cache.get(mpqa, "random-hashed-64", get_module("random-hashed-64").features)
    wide, _ = compact(hashed_unigram_bags(mpqa.texts, trainer.config.wide_buckets))
    ids, offsets = wide.select(rows)
    with torch.no_grad():
        expected = model({"features": torch.from_numpy(features[rows]), "wide_ids": torch.from_numpy(ids),
                          "wide_offsets": torch.from_numpy(offsets)})
    predicted = loaded.predict(pd.DataFrame({"text": texts}))
    assert list(predicted.columns) == ["label", "prob_neg", "prob_pos"]
    assert predicted["label"].tolist() == [mpqa.classes[i] for i in expected.argmax(-1).tolist()]
    assert np.array_equal(predicted[["prob_neg", "prob_pos"]].to_numpy(),
                          torch.softmax(expected, -1).numpy().astype(np.float64))
    served_accuracy = float((predicted["label"].map(mpqa.classes.index).to_numpy() == mpqa.labels[rows]).mean())
    assert served_accuracy == result.test_accuracy  # the ledger's number, from raw text
    assert len(set(predicted["label"])) == 2  # both classes occur: the check above has teeth
    as_list = loaded.unwrap_python_model().predict(None, texts[:5])  # a plain list of strings
    pd.testing.assert_frame_equal(as_list, predicted.head(5), check_exact=True)
    # Pins: the serving stack, not transfer_automl, kfp or the training stack.
    pins = served.pip_requirements
    assert {p.split("==")[0] for p in pins} == {"numpy", "pandas", "torch", "safetensors"}
    assert "torch==2.13.0" in pins
    meta = json.loads((tmp_path / "bundle" / "meta.json").read_text())
    assert meta["classes"] == ["neg", "pos"] and meta["input"]["lookup"] == "hashed-ngrams"


def test_a_fine_tuned_word_table_keeps_its_trained_rows(mpqa, feature_cache_dir, tmp_path):
    """GloVe fine-tuned: the served table is the pretrained one with the task's rows trained."""
    from transfer_automl.children.embeddings import get_module

    config = {**CONFIG, "input_module": "glove-6b-50d", "fine_tune": True, "wide_reg": "disable_wide_tower"}
    trainer, result = _trained(config, mpqa, feature_cache_dir)
    model = result.model.cpu().eval()
    _, loaded = _saved(model, mpqa, trainer, tmp_path)
    rows = mpqa.splits["test"]
    predicted = loaded.predict(pd.DataFrame({"text": [mpqa.texts[i] for i in rows]}))
    table = get_module("glove-6b-50d").table_input(mpqa.texts)
    ids, offsets = table.bags.select(rows)
    with torch.no_grad():
        expected = model({"ids": torch.from_numpy(ids), "offsets": torch.from_numpy(offsets)})
    assert predicted["label"].tolist() == [mpqa.classes[i] for i in expected.argmax(-1).tolist()]
    np.testing.assert_allclose(predicted[["prob_neg", "prob_pos"]].to_numpy(), torch.softmax(expected, -1).numpy(),
                               rtol=0, atol=1e-6)
    assert not torch.equal(model.embedding.weight[:5], torch.from_numpy(table.weights[:5]))  # it did train


def test_a_bundle_of_another_format_is_refused_naming_the_file(runtime, tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"format": "taml-champion", "format_version": 99}))
    with pytest.raises(ValueError, match=r"meta.json: not a taml-champion bundle of format version 1"):
        runtime.Champion(tmp_path)


@pytest.mark.slow
def test_a_fine_tuned_sentence_encoder_is_served_from_its_own_weights(samples_dir, tmp_path):
    """all-MiniLM-L6-v2 fine-tuned: the bundle carries the encoder directory (safetensors) and the
    child's fine-tuned encoder weights; served predictions match the trained child's."""
    from transfer_automl.children.embeddings import get_module
    from transfer_automl.tasks import load_task

    task = load_task("mpqa", samples_dir)
    config = {**CONFIG, "input_module": "all-minilm-l6-v2", "fine_tune": True, "training_samples": 2000}
    trainer, result = _trained(config, task, tmp_path / "cache")
    model = result.model.cpu().eval()
    _, loaded = _saved(model, task, trainer, tmp_path)
    assert (tmp_path / "bundle" / "encoder" / "model.safetensors").is_file()
    assert not list((tmp_path / "bundle").rglob("*.bin"))
    rows = task.splits["test"][:48]
    texts = [task.texts[i] for i in rows]
    predicted = loaded.predict(pd.DataFrame({"text": texts}))
    tokens = get_module("all-minilm-l6-v2").encoder_tokens(texts)
    wide, _ = compact(hashed_unigram_bags(task.texts, trainer.config.wide_buckets))
    ids, offsets = wide.select(rows)
    with torch.no_grad():
        expected = model({"encoder_inputs": tokens.batch(np.arange(len(texts)), "cpu"),
                          "wide_ids": torch.from_numpy(ids), "wide_offsets": torch.from_numpy(offsets)})
    assert predicted["label"].tolist() == [task.classes[i] for i in expected.argmax(-1).tolist()]
    np.testing.assert_allclose(predicted[["prob_neg", "prob_pos"]].to_numpy(), torch.softmax(expected, -1).numpy(),
                               rtol=0, atol=1e-5)

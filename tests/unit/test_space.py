"""Unit tests for transfer_automl.space: decisions, encoding, fingerprints, file I/O, errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from transfer_automl.errors import SearchSpaceError
from transfer_automl.space import (
    BUILTIN_SPACES,
    MNMS_TEXT,
    TAML_TEXT,
    Decision,
    SearchSpace,
    get_space,
    load_space,
    save_space,
    space_from_dict,
)

BUILTINS = [MNMS_TEXT, TAML_TEXT]


def _random_config(space: SearchSpace, rng: random.Random) -> dict:
    return {d.name: rng.choice(d.choices) for d in space.decisions}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _small(**extra) -> dict:
    return {"name": "small", "decisions": [{"name": "a", "choices": [1, 2]}, {"name": "b", "choices": ["x", "y", "z"]}], **extra}


# -- built-in spaces --------------------------------------------------------------------------


def test_builtin_decision_counts_match_the_papers():
    assert len(MNMS_TEXT) == 7
    assert len(TAML_TEXT) == 12
    assert MNMS_TEXT.names == [
        "embedding_table", "trainable", "layers", "nodes", "learning_rate", "iterations", "l2",
    ]
    assert TAML_TEXT.names == [
        "input_module", "fine_tune", "hidden_layers", "hidden_size", "activation", "normalization",
        "dropout", "deep_lr", "deep_reg", "wide_lr", "wide_reg", "training_samples",
    ]


def test_builtin_exact_choice_lists():
    taml = {d.name: d.choices for d in TAML_TEXT.decisions}
    mnms = {d.name: d.choices for d in MNMS_TEXT.decisions}
    assert taml["hidden_size"] == (8, 16, 32, 64, 128, 256)
    assert taml["hidden_layers"] == (1, 2, 3, 5, 7)
    assert taml["dropout"] == (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    assert taml["deep_reg"][-1] == "disable_deep_tower"
    assert taml["wide_reg"][-1] == "disable_wide_tower"
    assert mnms["layers"] == (1, 2, 3, 5, 10)
    assert mnms["nodes"] == (5, 10, 50, 100)
    assert mnms["learning_rate"] == (0.001, 0.01, 0.05, 0.1)
    assert mnms["trainable"] == (False, True)


def test_builtin_cardinalities_and_size():
    assert MNMS_TEXT.cardinalities == [2, 2, 5, 4, 4, 4, 4]
    assert MNMS_TEXT.size() == 2 * 2 * 5 * 4 * 4 * 4 * 4
    assert TAML_TEXT.cardinalities == [3, 2, 5, 6, 2, 3, 9, 8, 7, 8, 7, 7]
    expected = 1
    for n in [3, 2, 5, 6, 2, 3, 9, 8, 7, 8, 7, 7]:
        expected *= n
    assert TAML_TEXT.size() == expected


def test_get_space_by_name_and_by_path(tmp_path):
    assert get_space("mnms-text") is MNMS_TEXT
    assert get_space("taml-text") is TAML_TEXT
    assert set(BUILTIN_SPACES) == {"mnms-text", "taml-text", "taml-text-all-modules", "taml-image", "taml-text-cpu",
                                   "taml-text-cpu-full"}
    all_modules = get_space("taml-text-all-modules")
    assert all_modules.decisions[1:] == TAML_TEXT.decisions[1:]
    assert set(TAML_TEXT.decisions[0].choices) < set(all_modules.decisions[0].choices)
    path = tmp_path / "mine.yaml"
    save_space(MNMS_TEXT, path)
    assert get_space(str(path)).fingerprint() == MNMS_TEXT.fingerprint()


def test_get_space_unknown_name():
    with pytest.raises(SearchSpaceError, match="no-such-space") as info:
        get_space("no-such-space")
    assert isinstance(info.value, ValueError)
    assert "mnms-text" in str(info.value) and "taml-text" in str(info.value)


# -- encode / decode --------------------------------------------------------------------------


@pytest.mark.parametrize("space", BUILTINS, ids=lambda s: s.name)
def test_encode_decode_round_trip_random_configs(space):
    rng = random.Random(1234)
    for _ in range(300):
        config = _random_config(space, rng)
        indices = space.encode(config)
        assert len(indices) == len(space)
        assert all(0 <= i < n for i, n in zip(indices, space.cardinalities, strict=True))
        decoded = space.decode(indices)
        assert decoded == config
        assert list(decoded) == space.names  # decision order preserved
        # types survive the round trip (False is not 0, 0.0 is not 0)
        assert all(type(decoded[k]) is type(config[k]) for k in config)
        assert space.encode(decoded) == indices


@pytest.mark.parametrize("space", BUILTINS, ids=lambda s: s.name)
def test_decode_encode_round_trip_random_indices(space):
    rng = random.Random(99)
    for _ in range(300):
        indices = [rng.randrange(n) for n in space.cardinalities]
        assert space.encode(space.decode(indices)) == indices


def test_encode_exact_indices():
    config = {
        "embedding_table": "random-hashed-64", "trainable": False, "layers": 5, "nodes": 100,
        "learning_rate": 0.05, "iterations": 5000, "l2": 0.001,
    }
    assert MNMS_TEXT.encode(config) == [1, 0, 3, 3, 2, 0, 2]
    assert MNMS_TEXT.decode([1, 0, 3, 3, 2, 0, 2]) == config


def test_true_one_and_float_one_are_distinct_choices():
    d = Decision("x", (True, 1, 1.0, "1"))
    assert d.index(True) == 0
    assert d.index(1) == 1
    assert d.index(1.0) == 2
    assert d.index("1") == 3
    only_int = Decision("y", (0, 1))
    with pytest.raises(SearchSpaceError):
        only_int.index(True)
    with pytest.raises(SearchSpaceError):
        only_int.index(1.0)
    only_bool = Decision("z", (False, True))
    with pytest.raises(SearchSpaceError):
        only_bool.index(0)
    # True and 1 in one decision are not duplicates; fingerprints tell them apart
    a = SearchSpace("s", (Decision("x", (True, 2)),))
    b = SearchSpace("s", (Decision("x", (1, 2)),))
    c = SearchSpace("s", (Decision("x", (1.0, 2)),))
    assert len({a.fingerprint(), b.fingerprint(), c.fingerprint()}) == 3


def test_encode_missing_key():
    config = _random_config(TAML_TEXT, random.Random(0))
    del config["dropout"]
    with pytest.raises(SearchSpaceError, match="dropout") as info:
        TAML_TEXT.encode(config)
    assert "lacks" in str(info.value)


def test_encode_extra_key():
    config = _random_config(TAML_TEXT, random.Random(0))
    config["bogus"] = 1
    with pytest.raises(SearchSpaceError, match="bogus"):
        TAML_TEXT.encode(config)


def test_encode_value_not_among_choices():
    config = _random_config(TAML_TEXT, random.Random(0))
    config["hidden_size"] = 512
    with pytest.raises(SearchSpaceError, match="hidden_size") as info:
        TAML_TEXT.encode(config)
    assert "512" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("indices", [[0] * 6, [0] * 8, []])
def test_decode_wrong_length(indices):
    with pytest.raises(SearchSpaceError, match="7 decisions"):
        MNMS_TEXT.decode(indices)


@pytest.mark.parametrize("position, value", [(2, 5), (2, -1), (0, 2), (6, 4)])
def test_decode_out_of_range_index(position, value):
    indices = [0] * 7
    indices[position] = value
    name = MNMS_TEXT.names[position]
    with pytest.raises(SearchSpaceError, match=name) as info:
        MNMS_TEXT.decode(indices)
    assert str(value) in str(info.value)


# -- fingerprint ------------------------------------------------------------------------------


def test_fingerprint_stable_and_distinct_between_builtins():
    fp = TAML_TEXT.fingerprint()
    assert fp == TAML_TEXT.fingerprint()
    assert len(fp) == 16 and all(c in "0123456789abcdef" for c in fp)
    assert fp != MNMS_TEXT.fingerprint()
    # an equal space built separately has the same fingerprint
    clone = space_from_dict(TAML_TEXT.to_dict())
    assert clone is not TAML_TEXT
    assert clone.fingerprint() == fp


def test_fingerprint_ignores_name_and_description():
    base = SearchSpace("one", (Decision("a", (1, 2), "first"), Decision("b", ("x", "y"))))
    renamed = SearchSpace("two", (Decision("a", (1, 2), "other text"), Decision("b", ("x", "y"), "new")))
    assert base.fingerprint() == renamed.fingerprint()


def test_fingerprint_changes_with_choices_and_order():
    base = SearchSpace("s", (Decision("a", (1, 2)), Decision("b", ("x", "y"))))
    more = SearchSpace("s", (Decision("a", (1, 2, 3)), Decision("b", ("x", "y"))))
    reordered = SearchSpace("s", (Decision("a", (2, 1)), Decision("b", ("x", "y"))))
    swapped = SearchSpace("s", (Decision("b", ("x", "y")), Decision("a", (1, 2))))
    renamed_decision = SearchSpace("s", (Decision("aa", (1, 2)), Decision("b", ("x", "y"))))
    fps = [s.fingerprint() for s in (base, more, reordered, swapped, renamed_decision)]
    assert len(set(fps)) == len(fps)


# -- files ------------------------------------------------------------------------------------


def test_load_space_from_yaml(tmp_path):
    path = _write(tmp_path / "space.yaml", """
name: tiny
decisions:
  - name: layers
    choices: [1, 2, 3]
    description: depth
  - name: act
    choices: [relu, swish]
  - name: flag
    choices: [true, false]
  - name: lr
    choices: [0.1, 1.0]
""")
    space = load_space(path)
    assert space.name == "tiny"
    assert space.names == ["layers", "act", "flag", "lr"]
    assert space.decisions[0].choices == (1, 2, 3)
    assert space.decisions[0].description == "depth"
    assert space.decisions[2].choices == (True, False)
    assert type(space.decisions[3].choices[1]) is float
    assert space.decode([2, 1, 0, 1]) == {"layers": 3, "act": "swish", "flag": True, "lr": 1.0}


def test_load_space_from_json_name_defaults_to_stem(tmp_path):
    path = _write(tmp_path / "my-space.json", json.dumps(
        {"decisions": [{"name": "a", "choices": [1, 1.0, True, "1"]}]}
    ))
    space = load_space(path)
    assert space.name == "my-space"
    assert space.decisions[0].choices == (1, 1.0, True, "1")
    assert [type(c) for c in space.decisions[0].choices] == [int, float, bool, str]


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
@pytest.mark.parametrize("space", BUILTINS, ids=lambda s: s.name)
def test_save_load_round_trip_preserves_fingerprint(tmp_path, space, suffix):
    path = tmp_path / f"space{suffix}"
    save_space(space, path)
    loaded = load_space(path)
    assert loaded.fingerprint() == space.fingerprint()
    assert loaded == space  # name, choices and descriptions too
    if suffix == ".json":
        assert json.loads(path.read_text())["name"] == space.name


def _error_for(tmp_path: Path, name: str, text: str) -> str:
    path = _write(tmp_path / name, text)
    with pytest.raises(SearchSpaceError) as info:
        load_space(path)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert str(path) in message, message
    return message


def test_error_unknown_top_level_key(tmp_path):
    msg = _error_for(tmp_path, "s.json", json.dumps(_small(colour="blue")))
    assert "colour" in msg


def test_error_unknown_decision_key(tmp_path):
    data = _small()
    data["decisions"][1]["default"] = "x"
    msg = _error_for(tmp_path, "s.json", json.dumps(data))
    assert "default" in msg and "decisions[1]" in msg


def test_error_empty_choices(tmp_path):
    msg = _error_for(tmp_path, "s.yaml", "decisions:\n  - name: width\n    choices: []\n")
    assert "width" in msg and "choices" in msg and "empty" in msg


def test_error_duplicate_decision_names(tmp_path):
    msg = _error_for(tmp_path, "s.yaml", (
        "decisions:\n"
        "  - {name: depth, choices: [1, 2]}\n"
        "  - {name: depth, choices: [3, 4]}\n"
    ))
    assert "depth" in msg and "more than once" in msg


def test_error_duplicate_choice(tmp_path):
    msg = _error_for(tmp_path, "s.yaml", "decisions:\n  - {name: act, choices: [relu, swish, relu]}\n")
    assert "act" in msg and "relu" in msg and "twice" in msg


def test_error_choices_not_a_list(tmp_path):
    msg = _error_for(tmp_path, "s.yaml", "decisions:\n  - {name: act, choices: relu}\n")
    assert "act" in msg and "'choices' must be a list" in msg


@pytest.mark.parametrize("bad, type_name", [("{a: 1}", "dict"), ("null", "NoneType"), ("[1, 2]", "list")])
def test_error_choice_of_wrong_type(tmp_path, bad, type_name):
    msg = _error_for(tmp_path, "s.yaml", f"decisions:\n  - name: act\n    choices: [relu, {bad}]\n")
    assert "act" in msg and type_name in msg


def test_error_invalid_yaml_syntax(tmp_path):
    msg = _error_for(tmp_path, "s.yaml", "decisions: [\n  - {name: a, choices: [1, 2]\n")
    assert "not valid YAML" in msg
    assert "\n" not in msg


def test_error_invalid_json_syntax(tmp_path):
    msg = _error_for(tmp_path, "s.json", '{"decisions": [')
    assert "not valid JSON" in msg


def test_error_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(SearchSpaceError, match="does not exist") as info:
        load_space(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_error_top_level_not_mapping_and_missing_decisions(tmp_path):
    msg = _error_for(tmp_path, "a.yaml", "- 1\n- 2\n")
    assert "mapping" in msg
    msg = _error_for(tmp_path, "b.yaml", "name: x\n")
    assert "decisions" in msg
    msg = _error_for(tmp_path, "c.yaml", "decisions: []\n")
    assert "no decisions" in msg


def test_space_from_dict_source_defaults():
    with pytest.raises(SearchSpaceError, match="<dict>"):
        space_from_dict({"decisions": [{"name": "a"}]})
    with pytest.raises(SearchSpaceError, match="missing key 'choices'"):
        space_from_dict({"decisions": [{"name": "a"}]}, source="here.yaml")


def test_yaml_exponent_numbers_load_as_floats(tmp_path):
    from transfer_automl.space import load_space

    path = tmp_path / "s.yaml"
    path.write_text("decisions:\n  - {name: l2, choices: [0.0, 1e-5, 1E-3, '1e-2']}\n")
    assert load_space(path).decisions[0].choices == (0.0, 1e-5, 1e-3, "1e-2")


def test_the_cpu_demo_space_is_taml_text_cut_to_frozen_modules_and_small_budgets():
    from transfer_automl.children.embeddings import MODULES
    from transfer_automl.children.spec import child_spec

    cpu = get_space("taml-text-cpu")
    assert [d.name for d in cpu.decisions] == [d.name for d in TAML_TEXT.decisions]
    for mine, full in zip(cpu.decisions, TAML_TEXT.decisions, strict=True):  # a subspace of taml-text
        assert set(mine.choices) <= set(full.choices), mine.name
    assert cpu.decisions[1].choices == (False,)  # frozen only: features are cached once per task and module
    assert all(MODULES[m].name == m for m in cpu.decisions[0].choices)
    # the per-child cost cap: at --budget-scale 1 (make run) no child trains more than 100 steps of 100
    worst = {d.name: max(d.choices, key=lambda c: (isinstance(c, str), c)) for d in cpu.decisions}
    worst.update(deep_reg=0.0, wide_reg=0.0, training_samples=max(cpu.decisions[-1].choices))
    assert child_spec(worst, budget_scale=1.0, batch_size=100).train_steps == 100

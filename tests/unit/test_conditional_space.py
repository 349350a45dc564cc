"""Conditional decisions (Condition), their encoding with -1 for inactive decisions, file I/O,
fingerprints, and merge_spaces (Transfer NAS merged conditional spaces)."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from example_spaces import OPT  # noqa: E402  (tests/ is on the path, like s3_fixtures)
from transfer_automl.errors import SearchSpaceError
from transfer_automl.space import (
    INACTIVE,
    MNMS_TEXT,
    ROOT_DECISION,
    TAML_TEXT,
    Condition,
    Decision,
    SearchSpace,
    is_merged,
    load_space,
    merge_spaces,
    save_space,
    space_from_dict,
    split_config,
    subspace_choice_for,
)


def _all_valid_indices(space: SearchSpace) -> list[list[int]]:
    """Brute force: every index list (with -1) that decode accepts."""
    options = [[INACTIVE, *range(n)] for n in space.cardinalities]
    out = []
    for indices in itertools.product(*options):
        try:
            space.decode(list(indices))
        except SearchSpaceError:
            continue
        out.append(list(indices))
    return out


def _random_config(space: SearchSpace, rng: random.Random) -> dict:
    indices: list[int] = []
    for i, d in enumerate(space.decisions):
        indices.append(rng.randrange(len(d.choices)) if space.is_active(i, indices) else INACTIVE)
    return space.decode(indices)


# -- validation -------------------------------------------------------------------------------


def test_condition_on_unknown_parent_names_space_decision_and_parent():
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace("s", (Decision("a", (1, 2)), Decision("b", (1, 2), condition=Condition("nope", (1,)))))
    message = str(info.value)
    assert "'s'" in message and "'b'" in message and "'nope'" in message and "not a decision" in message


def test_condition_on_a_later_decision_is_rejected():
    with pytest.raises(SearchSpaceError, match="earlier") as info:
        SearchSpace("s", (Decision("a", (1, 2), condition=Condition("b", ("x",))), Decision("b", ("x", "y"))))
    assert "'a'" in str(info.value) and "'b'" in str(info.value)


def test_cyclic_and_self_conditions_get_a_clear_message():
    cyclic = (
        Decision("a", (1, 2), condition=Condition("b", ("x",))),
        Decision("b", ("x", "y"), condition=Condition("a", (1,))),
    )
    with pytest.raises(SearchSpaceError, match="does not come earlier.*rules out cycles"):
        SearchSpace("cyc", cyclic)
    with pytest.raises(SearchSpaceError, match="'a' is conditioned on 'a'.*earlier"):
        SearchSpace("self", (Decision("a", (1, 2), condition=Condition("a", (1,))),))


def test_condition_value_must_be_a_parent_choice():
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace("s", (Decision("opt", ("sgd", "adam")), Decision("beta", (0.9,), condition=Condition("opt", ("rmsprop",)))))
    message = str(info.value)
    assert "'s'" in message and "'beta'" in message and "'opt'" in message and "'rmsprop'" in message
    # True is not 1: a bool condition on an int parent is an error
    with pytest.raises(SearchSpaceError, match="True"):
        SearchSpace("s", (Decision("n", (0, 1)), Decision("m", (1, 2), condition=Condition("n", (True,)))))


@pytest.mark.parametrize("values", [(), [], None, ({"a": 1},), ("x", "x")])
def test_condition_values_must_be_distinct_non_empty_scalars(values):
    with pytest.raises(SearchSpaceError):
        Condition("opt", values)


def test_condition_accepts_a_list_and_stores_a_tuple():
    assert Condition("opt", ["sgd"]).values == ("sgd",)


def test_unconditional_space_has_no_conditions():
    assert not MNMS_TEXT.has_conditions and OPT.has_conditions
    assert all(d.condition is None for d in TAML_TEXT.decisions)


# -- activity, encode, decode -----------------------------------------------------------------


def test_active_follows_the_parent_chain():
    # adam, beta=0.99 -> beta2 active; sgd -> momentum only
    assert OPT.active([0, 1, -1, 1, 0]) == [True, True, False, True, True]
    assert OPT.active([0, 1, -1, 0, -1]) == [True, True, False, True, False]
    assert OPT.active([0, 0, 1, -1, -1]) == [True, True, True, False, False]
    assert OPT.active([1, 2, -1, -1, -1]) == [True, True, False, False, False]
    # a prefix gives its own decisions' activity; is_active the next one's
    assert OPT.active([0, 1]) == [True, True]
    assert OPT.is_active(3, [0, 1, -1]) and not OPT.is_active(2, [0, 1])
    assert OPT.is_active(4, [0, 1, -1, 1]) and not OPT.is_active(4, [0, 0, 1, -1])
    # an inactive parent makes its children inactive whatever its index says
    assert not OPT.is_active(4, [0, 0, 1, 1])
    with pytest.raises(SearchSpaceError, match="needs the 3 earlier"):
        OPT.is_active(3, [0])


def test_encode_gives_minus_one_for_inactive_decisions():
    assert OPT.encode({"lr": 0.1, "opt": "adam", "beta": 0.99, "beta2": 0.9999}) == [1, 1, -1, 1, 1]
    assert OPT.encode({"lr": 0.01, "opt": "sgd", "momentum": 0.9}) == [0, 0, 1, -1, -1]
    assert OPT.encode({"lr": 0.01, "opt": "adagrad"}) == [0, 2, -1, -1, -1]


def test_decode_omits_inactive_decisions():
    assert OPT.decode([1, 1, -1, 0, -1]) == {"lr": 0.1, "opt": "adam", "beta": 0.9}
    assert OPT.decode([0, 2, -1, -1, -1]) == {"lr": 0.01, "opt": "adagrad"}


@pytest.mark.parametrize("indices, name", [
    ([0, 1, 0, 0, -1], "momentum"),  # adam: momentum inactive but given 0
    ([0, 0, 1, -1, 2], "beta2"),  # sgd: beta inactive, so beta2 too
    ([0, 2, -1, -1, 0], "beta2"),
])
def test_decode_requires_minus_one_for_inactive(indices, name):
    with pytest.raises(SearchSpaceError, match=f"'{name}' is inactive.*needs index -1") as info:
        OPT.decode(indices)
    assert "parent" in str(info.value)


@pytest.mark.parametrize("indices, name", [([0, 1, -1, -1, -1], "beta"), ([-1, 0, 0, -1, -1], "lr"), ([0, 1, -1, 1, 3], "beta2")])
def test_decode_rejects_minus_one_or_out_of_range_for_active(indices, name):
    with pytest.raises(SearchSpaceError, match=f"'{name}'"):
        OPT.decode(indices)


def test_encode_rejects_a_value_for_an_inactive_decision():
    with pytest.raises(SearchSpaceError, match="inactive") as info:
        OPT.encode({"lr": 0.1, "opt": "sgd", "momentum": 0.9, "beta": 0.9})
    assert "'beta'" in str(info.value) and "'opt'" in str(info.value) and "'sgd'" in str(info.value)


def test_encode_rejects_a_missing_active_decision():
    with pytest.raises(SearchSpaceError, match=r"lacks decision\(s\) \['beta'\]"):
        OPT.encode({"lr": 0.1, "opt": "adam"})
    with pytest.raises(SearchSpaceError, match=r"lacks decision\(s\) \['opt'\]"):
        OPT.encode({"lr": 0.1})
    with pytest.raises(SearchSpaceError, match="bogus"):
        OPT.encode({"lr": 0.1, "opt": "adagrad", "bogus": 1})


def test_round_trips_and_size_match_brute_force():
    valid = _all_valid_indices(OPT)
    # lr(2) x [sgd: momentum(2) + adam: beta 0.9 (1) + beta 0.99 (3) + adagrad (1)] = 2 x 7
    assert len(valid) == OPT.size() == 14
    for indices in valid:
        config = OPT.decode(indices)
        assert OPT.encode(config) == indices
        assert list(config) == [n for n, a in zip(OPT.names, OPT.active(indices), strict=True) if a]
    rng = random.Random(3)
    for _ in range(100):
        config = _random_config(OPT, rng)
        assert OPT.decode(OPT.encode(config)) == config


# -- files and fingerprints -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_conditions_survive_a_file_round_trip(tmp_path, suffix):
    path = tmp_path / f"opt{suffix}"
    save_space(OPT, path)
    text = path.read_text()
    assert "condition" in text and "parent" in text
    loaded = load_space(path)
    assert loaded == OPT
    assert loaded.fingerprint() == OPT.fingerprint()
    assert loaded.decisions[4].condition == Condition("beta", (0.99,))


def test_to_dict_writes_condition_only_when_present():
    data = OPT.to_dict()
    assert "condition" not in data["decisions"][0]
    assert data["decisions"][2]["condition"] == {"parent": "opt", "values": ["sgd"]}
    assert space_from_dict(json.loads(json.dumps(data))) == OPT
    assert all("condition" not in d for d in MNMS_TEXT.to_dict()["decisions"])


def test_load_yaml_with_a_condition(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "decisions:\n"
        "  - {name: opt, choices: [sgd, adam]}\n"
        "  - name: beta\n"
        "    choices: [0.9, 0.99]\n"
        "    condition: {parent: opt, values: [adam]}\n"
    )
    space = load_space(path)
    assert space.decisions[1].condition == Condition("opt", ("adam",))
    assert space.decode([0, -1]) == {"opt": "sgd"}


@pytest.mark.parametrize("condition, words", [
    ({"parent": "opt", "values": ["adam"], "when": 1}, ["unknown key", "when", "decisions[1]", "'beta'"]),
    ({"parent": "opt"}, ["lacks key 'values'"]),
    ({"values": ["adam"]}, ["lacks key 'parent'"]),
    ({"parent": "opt", "values": "adam"}, ["'values' must be a list"]),
    ({"parent": "opt", "values": []}, ["non-empty", "decisions[1]"]),
    ("opt == adam", ["'condition' must be a mapping"]),
    ({"parent": "opt", "values": ["rmsprop"]}, ["'beta'", "'opt'", "'rmsprop'"]),
    ({"parent": "later", "values": [1]}, ["'later'", "earlier"]),
    ({"parent": "ghost", "values": [1]}, ["'ghost'", "not a decision"]),
])
def test_bad_conditions_in_files_name_file_and_field(tmp_path, condition, words):
    data = {"decisions": [
        {"name": "opt", "choices": ["sgd", "adam"]},
        {"name": "beta", "choices": [0.9, 0.99], "condition": condition},
        {"name": "later", "choices": [1, 2]},
    ]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SearchSpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_unconditional_fingerprints_are_unchanged():
    # Values computed by the code before conditions existed: checkpoints stay valid.
    assert MNMS_TEXT.fingerprint() == "a5805f0af2ba5bad"
    assert TAML_TEXT.fingerprint() == "b51e4025e761aa2c"


def test_a_condition_changes_the_fingerprint():
    plain = SearchSpace("s", (Decision("opt", ("sgd", "adam")), Decision("beta", (0.9, 0.99))))
    cond = SearchSpace("s", (Decision("opt", ("sgd", "adam")), Decision("beta", (0.9, 0.99), condition=Condition("opt", ("adam",)))))
    other = SearchSpace("s", (Decision("opt", ("sgd", "adam")), Decision("beta", (0.9, 0.99), condition=Condition("opt", ("sgd",)))))
    assert len({plain.fingerprint(), cond.fingerprint(), other.fingerprint()}) == 3
    described = SearchSpace("t", (Decision("opt", ("sgd", "adam"), "x"), Decision("beta", (0.9, 0.99), "y", Condition("opt", ("adam",)))))
    assert described.fingerprint() == cond.fingerprint()


# -- merge_spaces -----------------------------------------------------------------------------

CNN = SearchSpace("cnn", (
    Decision("filters", (16, 32)),
    Decision("opt", ("sgd", "adam")),
    Decision("beta", (0.9, 0.99), condition=Condition("opt", ("adam",))),
    Decision("fc_units", (64, 128)),
))
FFN = SearchSpace("ffn", (Decision("layers", (1, 2, 3)), Decision("fc_units", (64, 128))))


def test_merge_adds_a_root_and_shares_decisions_by_name():
    merged = merge_spaces([CNN, FFN], name="cnn+ffn")
    assert merged.name == "cnn+ffn" and is_merged(merged) and not is_merged(CNN)
    assert merged.names == [ROOT_DECISION, "filters", "opt", "beta", "fc_units", "layers"]
    root = merged.decisions[0]
    assert root.choices == ("cnn", "ffn") and root.condition is None
    conditions = {d.name: d.condition for d in merged.decisions}
    assert conditions["filters"] == Condition(ROOT_DECISION, ("cnn",))
    assert conditions["fc_units"] == Condition(ROOT_DECISION, ("cnn", "ffn"))  # shared, once
    assert conditions["layers"] == Condition(ROOT_DECISION, ("ffn",))
    assert conditions["beta"] == Condition("opt", ("adam",))  # nested through its parent
    assert merged.size() == CNN.size() + FFN.size() == 2 * 3 * 2 + 3 * 2
    assert subspace_choice_for(merged, "cnn") == 0 and subspace_choice_for(merged, "ffn") == 1


def test_merged_configs_round_trip_to_the_source_configs():
    merged = merge_spaces([CNN, FFN])
    for source in (CNN, FFN):
        for indices in _all_valid_indices(source):
            config = source.decode(indices)
            merged_config = {ROOT_DECISION: source.name, **config}
            encoded = merged.encode(merged_config)
            assert encoded[0] == subspace_choice_for(merged, source.name)
            assert merged.decode(encoded) == {k: merged_config[k] for k in merged.names if k in merged_config}
            assert split_config(merged, merged.decode(encoded)) == (source.name, config)
    # the ffn never has filters or beta: encoding them is an error
    with pytest.raises(SearchSpaceError, match="inactive.*'filters'"):
        merged.encode({ROOT_DECISION: "ffn", "layers": 1, "fc_units": 64, "filters": 16})
    # beta needs both the cnn and adam
    assert merged.encode({ROOT_DECISION: "cnn", "filters": 16, "opt": "sgd", "fc_units": 64}) == [0, 0, 0, -1, 0, -1]
    assert merged.decode([1, -1, -1, -1, 1, 2]) == {ROOT_DECISION: "ffn", "fc_units": 128, "layers": 3}


def test_merged_space_survives_a_file_round_trip(tmp_path):
    merged = merge_spaces([CNN, FFN])
    save_space(merged, tmp_path / "merged.yaml")
    loaded = load_space(tmp_path / "merged.yaml")
    assert loaded == merged and loaded.fingerprint() == merged.fingerprint()


def test_merge_conflicting_choices_names_both_spaces():
    other = SearchSpace("wide", (Decision("fc_units", (256, 512)),))
    with pytest.raises(SearchSpaceError) as info:
        merge_spaces([CNN, FFN, other])
    message = str(info.value)
    assert "'fc_units'" in message and "'cnn'" in message and "'wide'" in message and "identical choices" in message


def test_merge_conflicting_conditions_names_both_spaces():
    other = SearchSpace("cnn2", (Decision("opt", ("sgd", "adam")), Decision("beta", (0.9, 0.99))))
    with pytest.raises(SearchSpaceError, match="'beta' has condition opt in \\['adam'\\] in space 'cnn' but none in space 'cnn2'"):
        merge_spaces([CNN, other])


def test_merge_rejects_a_conditional_decision_whose_parent_more_spaces_share():
    # 'opt' is shared by cnn and rnn, but only the cnn has 'beta' under adam: one condition
    # cannot say "space is cnn and opt is adam".
    rnn = SearchSpace("rnn", (Decision("opt", ("sgd", "adam")), Decision("cell", ("lstm", "gru"))))
    with pytest.raises(SearchSpaceError, match="'beta'.*'opt'.*cannot tell those spaces apart"):
        merge_spaces([CNN, rnn])
    # sharing the parent AND the conditional decision is fine
    rnn2 = SearchSpace("rnn", (
        Decision("opt", ("sgd", "adam")), Decision("beta", (0.9, 0.99), condition=Condition("opt", ("adam",))),
    ))
    merged = merge_spaces([CNN, rnn2])
    assert merged.decisions[merged.position("opt")].condition == Condition(ROOT_DECISION, ("cnn", "rnn"))


def test_merge_other_errors():
    with pytest.raises(SearchSpaceError, match="at least one"):
        merge_spaces([])
    with pytest.raises(SearchSpaceError, match="'cnn'.*more than once"):
        merge_spaces([CNN, CNN])
    reserved = SearchSpace("bad", (Decision(ROOT_DECISION, (1, 2)),))
    with pytest.raises(SearchSpaceError, match="reserves"):
        merge_spaces([CNN, reserved])
    merged = merge_spaces([CNN])
    assert merged.decisions[0].choices == ("cnn",)
    with pytest.raises(SearchSpaceError, match="no source space 'rnn'"):
        subspace_choice_for(merged, "rnn")
    with pytest.raises(SearchSpaceError, match="not a merged space"):
        subspace_choice_for(CNN, "cnn")

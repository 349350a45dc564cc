"""Merge search spaces into one conditional space (Transfer NAS, section 3 and Figure 1).

    merged = merge_spaces([cnn, ffn])
    merged.names        # ["search_space", <cnn's decisions>, <ffn's decisions not in cnn>]

The first decision, `search_space` (the paper's start state S), chooses among the source spaces
by name; its action embedding is the agent's search-space embedding. Every other decision of the
merged space is the union of the sources' decisions, in first-seen order:

* A decision name that several spaces share with identical choices becomes ONE decision, active
  under all of those spaces, so a controller that keys its embeddings by decision name shares
  them between the spaces (the paper's "fully connected" state of Figure 1).
* The same name with different choices is an error naming both spaces; rename the decision in
  one of the source files. (The paper also merges such states, with a different set of valid
  actions per space; a `Decision` has one choice list, so that is not expressible here.)
* An unconditional source decision gets `Condition("search_space", <the spaces that have it>)`.
* A conditional source decision keeps its own condition on its parent P: P is itself active
  only under the spaces that have it, so "space in {...} and P in {...}" follows through the
  parent chain without a second condition. That needs P and the decision to belong to exactly
  the same spaces, and the condition to be the same in each; otherwise the merge is an error.

The merged order lists a shared decision where its first space placed it, so a later space may
see its shared decisions in a different order than in its own file; a conditional decision
always follows its parent, because both come from the first space that has the decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transfer_automl.errors import SearchSpaceError
from transfer_automl.space.decisions import (
    Choice,
    Condition,
    Decision,
    SearchSpace,
    canonical_value,
)

ROOT_DECISION = "search_space"


def merge_spaces(spaces: Sequence[SearchSpace], name: str = "merged") -> SearchSpace:
    """One conditional space whose root decision `search_space` picks a source space."""
    if not spaces:
        raise SearchSpaceError("merge_spaces needs at least one search space")
    space_names = [s.name for s in spaces]
    duplicates = sorted({n for n in space_names if space_names.count(n) > 1})
    if duplicates:
        raise SearchSpaceError(f"merge_spaces: space name(s) {duplicates} appear more than once; names must be unique")

    first: dict[str, tuple[Decision, str]] = {}  # decision name -> (decision, first space)
    owners: dict[str, list[str]] = {}
    for space in spaces:
        for d in space.decisions:
            if d.name == ROOT_DECISION:
                raise SearchSpaceError(
                    f"merge_spaces: space {space.name!r} has a decision named {ROOT_DECISION!r}, "
                    "which the merged space reserves for its root"
                )
            if d.name not in first:
                first[d.name] = (d, space.name)
                owners[d.name] = [space.name]
                continue
            seen, seen_in = first[d.name]
            if _choices_key(seen.choices) != _choices_key(d.choices):
                raise SearchSpaceError(
                    f"merge_spaces: decision {d.name!r} has choices {list(seen.choices)} in space {seen_in!r} "
                    f"but {list(d.choices)} in space {space.name!r}; shared decisions need identical choices "
                    "(rename one of them)"
                )
            if _condition_key(seen.condition) != _condition_key(d.condition):
                raise SearchSpaceError(
                    f"merge_spaces: decision {d.name!r} has condition {_show(seen.condition)} in space "
                    f"{seen_in!r} but {_show(d.condition)} in space {space.name!r}; shared decisions need "
                    "the same condition (rename one of them)"
                )
            owners[d.name].append(space.name)

    merged = [Decision(ROOT_DECISION, tuple(space_names), "source search space (merge_spaces)")]
    for decision_name, (d, _) in first.items():
        if d.condition is None:
            condition = Condition(ROOT_DECISION, tuple(owners[decision_name]))
        else:
            parent = d.condition.parent
            if owners[parent] != owners[decision_name]:
                raise SearchSpaceError(
                    f"merge_spaces: decision {decision_name!r} (in spaces {owners[decision_name]}) is "
                    f"conditioned on {parent!r}, which spaces {owners[parent]} share; a decision can carry "
                    "one condition, so the merged space cannot tell those spaces apart for "
                    f"{decision_name!r} (rename {decision_name!r} or {parent!r} in one of them)"
                )
            condition = d.condition
        merged.append(Decision(decision_name, d.choices, d.description, condition))
    return SearchSpace(name, tuple(merged))


def is_merged(space: SearchSpace) -> bool:
    """Whether the space starts with an unconditional `search_space` root (as merge_spaces builds)."""
    root = space.decisions[0]
    return root.name == ROOT_DECISION and root.condition is None


def subspace_choice_for(space: SearchSpace, space_name: str) -> int:
    """The root action that binds a trial to source space `space_name` in a merged space."""
    if not is_merged(space):
        raise SearchSpaceError(f"space {space.name!r} is not a merged space (no {ROOT_DECISION!r} root decision)")
    choices = space.decisions[0].choices
    if space_name not in choices:
        raise SearchSpaceError(
            f"merged space {space.name!r} has no source space {space_name!r}; it has {list(choices)}"
        )
    return choices.index(space_name)


def split_config(space: SearchSpace, config: Mapping[str, Any]) -> tuple[str, dict[str, Choice]]:
    """A decoded merged config -> (source space name, that space's own config)."""
    if not is_merged(space):
        raise SearchSpaceError(f"space {space.name!r} is not a merged space (no {ROOT_DECISION!r} root decision)")
    if ROOT_DECISION not in config:
        raise SearchSpaceError(f"config lacks the root decision {ROOT_DECISION!r} of merged space {space.name!r}")
    return str(config[ROOT_DECISION]), {k: v for k, v in config.items() if k != ROOT_DECISION}


def _choices_key(choices: Sequence[Choice]) -> tuple[str, ...]:
    return tuple(canonical_value(c) for c in choices)


def _condition_key(condition: Condition | None) -> tuple[str, tuple[str, ...]] | None:
    return None if condition is None else (condition.parent, _choices_key(condition.values))


def _show(condition: Condition | None) -> str:
    return "none" if condition is None else f"{condition.parent} in {list(condition.values)}"

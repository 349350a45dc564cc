"""Categorical search spaces: an ordered list of named decisions, each with a list of choices.

A configuration is a dict {decision name: chosen value}; its encoding is the list of chosen
indices, one per decision, in order. The controller only ever sees indices.

Conditional spaces (Transfer NAS, section 3): a decision may carry a `Condition(parent, values)`,
meaning it exists only when the decision `parent`, which must come earlier in the order, is
itself active and took one of `values`. Conditions chain through parents, so "space is A and
optimizer is adam" is a decision conditioned on `optimizer`, itself conditioned on the space. An
inactive decision is encoded as index -1 and is absent from the config dict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from transfer_automl.errors import SearchSpaceError

Choice = str | int | float | bool
_SCALARS = (str, int, float, bool)


INACTIVE = -1  # the action index of a decision whose condition does not hold


@dataclass(frozen=True)
class Condition:
    """The decision exists only when decision `parent` is active and took one of `values`."""

    parent: str
    values: tuple[Choice, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.parent, str) or not self.parent.strip():
            raise SearchSpaceError(f"condition parent must be a non-empty decision name, got {self.parent!r}")
        if isinstance(self.values, list):
            object.__setattr__(self, "values", tuple(self.values))
        if not isinstance(self.values, tuple) or not self.values:
            raise SearchSpaceError(f"condition on {self.parent!r}: 'values' must be a non-empty list, got {self.values!r}")
        _check_distinct_scalars(self.values, f"condition on {self.parent!r}", "value")

    def to_dict(self) -> dict[str, Any]:
        return {"parent": self.parent, "values": list(self.values)}


@dataclass(frozen=True)
class Decision:
    """One design choice: a name, the values the controller may pick from, and optionally the
    condition under which the choice exists at all."""

    name: str
    choices: tuple[Choice, ...]
    description: str = ""
    condition: Condition | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SearchSpaceError(f"decision name must be a non-empty string, got {self.name!r}")
        if len(self.choices) == 0:
            raise SearchSpaceError(f"decision {self.name!r}: 'choices' is empty")
        _check_distinct_scalars(self.choices, f"decision {self.name!r}", "choice")
        if self.condition is not None and not isinstance(self.condition, Condition):
            raise SearchSpaceError(
                f"decision {self.name!r}: condition must be a Condition, got {type(self.condition).__name__}"
            )

    def index(self, value: Any) -> int:
        """Index of `value` among the choices; 1 and 1.0 are different choices, True is not 1."""
        key = canonical_value(value)
        for i, choice in enumerate(self.choices):
            if canonical_value(choice) == key:
                return i
        raise SearchSpaceError(
            f"decision {self.name!r}: value {value!r} is not one of {list(self.choices)}"
        )


@dataclass(frozen=True)
class SearchSpace:
    """An ordered, immutable set of categorical decisions."""

    name: str
    decisions: tuple[Decision, ...]

    def __post_init__(self) -> None:
        if not self.decisions:
            raise SearchSpaceError(f"search space {self.name!r} has no decisions")
        names = [d.name for d in self.decisions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SearchSpaceError(
                f"search space {self.name!r}: decision name(s) {duplicates} appear more than once"
            )
        position = {n: i for i, n in enumerate(names)}
        for i, d in enumerate(self.decisions):
            c = d.condition
            if c is None:
                continue
            where = f"search space {self.name!r}: decision {d.name!r} is conditioned on {c.parent!r}"
            if c.parent not in position:
                raise SearchSpaceError(f"{where}, which is not a decision of the space")
            if position[c.parent] >= i:
                raise SearchSpaceError(
                    f"{where}, which does not come earlier (position {position[c.parent]} vs {i}); "
                    "a parent must precede its conditional decisions, which also rules out cycles"
                )
            parent = self.decisions[position[c.parent]]
            for value in c.values:
                try:
                    parent.index(value)
                except SearchSpaceError:
                    raise SearchSpaceError(
                        f"{where}: value {value!r} is not one of {c.parent!r}'s choices {list(parent.choices)}"
                    ) from None

    def __len__(self) -> int:
        return len(self.decisions)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.decisions]

    @property
    def cardinalities(self) -> list[int]:
        return [len(d.choices) for d in self.decisions]

    @property
    def has_conditions(self) -> bool:
        return any(d.condition is not None for d in self.decisions)

    def position(self, name: str) -> int:
        """Index of decision `name` in the order."""
        for i, d in enumerate(self.decisions):
            if d.name == name:
                return i
        raise SearchSpaceError(f"search space {self.name!r} has no decision {name!r}")

    def condition_structure(self) -> list[tuple[int, frozenset[int]] | None]:
        """Per decision: None if unconditional, else (parent position, allowed parent indices).
        Controllers turn this into tensors once, at construction."""
        return list(self._structure)

    @cached_property
    def _structure(self) -> tuple[tuple[int, frozenset[int]] | None, ...]:
        position = {d.name: i for i, d in enumerate(self.decisions)}
        out: list[tuple[int, frozenset[int]] | None] = []
        for d in self.decisions:
            if d.condition is None:
                out.append(None)
                continue
            p = position[d.condition.parent]
            out.append((p, frozenset(self.decisions[p].index(v) for v in d.condition.values)))
        return tuple(out)

    def is_active(self, position: int, prefix: Sequence[int]) -> bool:
        """Whether decision `position` exists, given the actions of the decisions before it.

        `prefix` holds at least the indices of decisions 0..position-1 (-1 where inactive); an
        unconditional decision is always active, a conditional one when its parent is active and
        its action is one of the condition's values.
        """
        if not 0 <= position < len(self.decisions):
            raise SearchSpaceError(f"space {self.name!r} has no decision at position {position}")
        if len(prefix) < position:
            raise SearchSpaceError(
                f"decision {self.decisions[position].name!r} needs the {position} earlier indices, "
                f"got {len(prefix)}"
            )
        return self.active(list(prefix[:position]) + [0])[position]

    def active(self, indices: Sequence[int]) -> list[bool]:
        """Activity of decisions 0..len(indices)-1 given these indices: decision i depends only on
        indices before i, so a prefix gives the activity of its own decisions and `is_active`
        of the next one. Entries for inactive parents are not read."""
        structure = self._structure
        out: list[bool] = []
        for i in range(min(len(indices), len(self.decisions))):
            cond = structure[i]
            if cond is None:
                out.append(True)
            else:
                parent, allowed = cond
                out.append(out[parent] and int(indices[parent]) in allowed)
        return out

    def size(self) -> int:
        """Number of distinct configurations (for a conditional space: of valid, distinct
        index lists, counted over the forest of conditions)."""
        if not self.has_conditions:
            total = 1
            for n in self.cardinalities:
                total *= n
            return total
        structure = self._structure
        children: dict[int, list[int]] = {}
        for i, cond in enumerate(structure):
            if cond is not None:
                children.setdefault(cond[0], []).append(i)

        def count(i: int) -> int:
            # Configurations of the subtree rooted at decision i, given that i is active.
            total = 0
            for choice in range(len(self.decisions[i].choices)):
                product = 1
                for child in children.get(i, []):
                    if choice in structure[child][1]:  # type: ignore[index]
                        product *= count(child)
                total += product
            return total

        total = 1
        for i, cond in enumerate(structure):
            if cond is None:
                total *= count(i)
        return total

    def encode(self, config: Mapping[str, Any]) -> list[int]:
        """Config dict -> one choice index per decision (-1 for inactive decisions). Extra keys,
        a missing active decision and a value for an inactive decision are errors."""
        extra = sorted(set(config) - set(self.names))
        if extra:
            raise SearchSpaceError(f"config has key(s) {extra} that space {self.name!r} lacks")
        if not self.has_conditions:
            missing = [n for n in self.names if n not in config]
            if missing:
                raise SearchSpaceError(f"config lacks decision(s) {missing} of space {self.name!r}")
            return [d.index(config[d.name]) for d in self.decisions]
        structure = self._structure
        indices: list[int] = []
        missing, inactive_given = [], []
        for i, d in enumerate(self.decisions):
            cond = structure[i]
            active = cond is None or (indices[cond[0]] != INACTIVE and indices[cond[0]] in cond[1])
            if not active:
                if d.name in config:
                    inactive_given.append(f"{d.name!r} ({self._why_inactive(i, indices)})")
                indices.append(INACTIVE)
            elif d.name not in config:
                missing.append(d.name)
                indices.append(INACTIVE)  # its children count as inactive; the error names it
            else:
                indices.append(d.index(config[d.name]))
        if missing:
            raise SearchSpaceError(f"config lacks decision(s) {missing} of space {self.name!r}")
        if inactive_given:
            raise SearchSpaceError(
                f"config gives value(s) for inactive decision(s) of space {self.name!r}: "
                + "; ".join(inactive_given)
            )
        return indices

    def decode(self, indices: Sequence[int]) -> dict[str, Choice]:
        """One choice index per decision -> config dict; inactive decisions need exactly -1 and
        are left out of the config."""
        if len(indices) != len(self.decisions):
            raise SearchSpaceError(
                f"space {self.name!r} has {len(self.decisions)} decisions, got {len(indices)} indices"
            )
        structure = self._structure
        seen: list[int] = []
        config: dict[str, Choice] = {}
        for position, (decision, raw) in enumerate(zip(self.decisions, indices, strict=True)):
            i = int(raw)
            cond = structure[position]
            active = cond is None or (seen[cond[0]] != INACTIVE and seen[cond[0]] in cond[1])
            seen.append(i)
            if not active:
                if i != INACTIVE:
                    raise SearchSpaceError(
                        f"decision {decision.name!r} is inactive ({self._why_inactive(position, seen)}) "
                        f"and needs index -1, got {i}"
                    )
                continue
            if not 0 <= i < len(decision.choices):
                raise SearchSpaceError(
                    f"decision {decision.name!r}: index {i} outside 0..{len(decision.choices) - 1}"
                    + (" (it is active, so -1 is not allowed)" if i == INACTIVE and cond is not None else "")
                )
            config[decision.name] = decision.choices[i]
        return config

    def _why_inactive(self, position: int, indices: Sequence[int]) -> str:
        c = self.decisions[position].condition
        if c is None:
            return "unconditional"
        parent = self.decisions[self.position(c.parent)]
        got = int(indices[self.position(c.parent)])
        shown = "inactive" if got == INACTIVE else repr(parent.choices[got])
        return f"parent {c.parent!r} is {shown}, condition needs one of {list(c.values)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "decisions": [
                {
                    "name": d.name, "choices": list(d.choices),
                    **({"description": d.description} if d.description else {}),
                    **({"condition": d.condition.to_dict()} if d.condition is not None else {}),
                }
                for d in self.decisions
            ],
        }

    def fingerprint(self) -> str:
        """Hash of the decisions, choices and conditions (not the name or descriptions): two
        spaces with the same fingerprint encode every configuration identically, so checkpoints
        can be shared. An unconditional decision hashes as before conditions existed."""
        body = [
            [d.name, [canonical_value(c) for c in d.choices]]
            + ([[d.condition.parent, [canonical_value(v) for v in d.condition.values]]] if d.condition else [])
            for d in self.decisions
        ]
        digest = hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()
        return digest[:16]


def _check_distinct_scalars(values: tuple, where: str, what: str) -> None:
    """Every value a string, number or boolean, and no value twice (True, 1 and 1.0 differ)."""
    seen: set[str] = set()
    for value in values:
        if value is None or not isinstance(value, _SCALARS):
            raise SearchSpaceError(
                f"{where}: {what} {value!r} is a {type(value).__name__}; {what}s must be strings, numbers or booleans"
            )
        key = canonical_value(value)
        if key in seen:
            raise SearchSpaceError(f"{where}: {what} {value!r} appears twice")
        seen.add(key)


def canonical_value(value: Any) -> str:
    """Type-tagged text so that True, 1 and 1.0 stay distinct choices."""
    return f"{type(value).__name__}:{json.dumps(value)}"

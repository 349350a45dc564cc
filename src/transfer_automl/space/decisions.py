"""Categorical search spaces: an ordered list of named decisions, each with a list of choices.

A configuration is a dict {decision name: chosen value}; its encoding is the list of chosen
indices, one per decision, in order. The controller only ever sees indices.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transfer_automl.errors import SearchSpaceError

Choice = str | int | float | bool
_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Decision:
    """One design choice: a name and the values the controller may pick from."""

    name: str
    choices: tuple[Choice, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SearchSpaceError(f"decision name must be a non-empty string, got {self.name!r}")
        if len(self.choices) == 0:
            raise SearchSpaceError(f"decision {self.name!r}: 'choices' is empty")
        seen: set[str] = set()
        for value in self.choices:
            if value is None or not isinstance(value, _SCALARS):
                raise SearchSpaceError(
                    f"decision {self.name!r}: choice {value!r} is a {type(value).__name__}; "
                    "choices must be strings, numbers or booleans"
                )
            key = _canonical(value)
            if key in seen:
                raise SearchSpaceError(f"decision {self.name!r}: choice {value!r} appears twice")
            seen.add(key)

    def index(self, value: Any) -> int:
        """Index of `value` among the choices; 1 and 1.0 are different choices, True is not 1."""
        key = _canonical(value)
        for i, choice in enumerate(self.choices):
            if _canonical(choice) == key:
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

    def __len__(self) -> int:
        return len(self.decisions)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.decisions]

    @property
    def cardinalities(self) -> list[int]:
        return [len(d.choices) for d in self.decisions]

    def size(self) -> int:
        """Number of distinct configurations."""
        total = 1
        for n in self.cardinalities:
            total *= n
        return total

    def encode(self, config: Mapping[str, Any]) -> list[int]:
        """Config dict -> one choice index per decision. Missing or extra keys are errors."""
        extra = sorted(set(config) - set(self.names))
        if extra:
            raise SearchSpaceError(f"config has key(s) {extra} that space {self.name!r} lacks")
        missing = [n for n in self.names if n not in config]
        if missing:
            raise SearchSpaceError(f"config lacks decision(s) {missing} of space {self.name!r}")
        return [d.index(config[d.name]) for d in self.decisions]

    def decode(self, indices: Sequence[int]) -> dict[str, Choice]:
        """One choice index per decision -> config dict."""
        if len(indices) != len(self.decisions):
            raise SearchSpaceError(
                f"space {self.name!r} has {len(self.decisions)} decisions, got {len(indices)} indices"
            )
        config: dict[str, Choice] = {}
        for decision, raw in zip(self.decisions, indices, strict=True):
            i = int(raw)
            if not 0 <= i < len(decision.choices):
                raise SearchSpaceError(
                    f"decision {decision.name!r}: index {i} outside 0..{len(decision.choices) - 1}"
                )
            config[decision.name] = decision.choices[i]
        return config

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "decisions": [
                {"name": d.name, "choices": list(d.choices), **({"description": d.description} if d.description else {})}
                for d in self.decisions
            ],
        }

    def fingerprint(self) -> str:
        """Hash of the decisions and choices (not the name or descriptions): two spaces with the
        same fingerprint encode every configuration identically, so checkpoints can be shared."""
        body = [[d.name, [_canonical(c) for c in d.choices]] for d in self.decisions]
        digest = hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()
        return digest[:16]


def _canonical(value: Any) -> str:
    """Type-tagged text so that True, 1 and 1.0 stay distinct choices."""
    return f"{type(value).__name__}:{json.dumps(value)}"

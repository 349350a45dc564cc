"""Load and save search spaces as YAML or JSON, with errors that name the file and the field.

A conditional decision carries `condition: {parent: <earlier decision>, values: [...]}`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from transfer_automl.errors import SearchSpaceError
from transfer_automl.space.decisions import Condition, Decision, SearchSpace

_SPACE_KEYS = {"name", "decisions"}


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-5` as a float (YAML 1.2); PyYAML's YAML 1.1 rules would read a
    number without a decimal point, such as a regularization weight, as the string "1e-5"."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
_DECISION_KEYS = {"name", "choices", "description", "condition"}
_CONDITION_KEYS = {"parent", "values"}


def _condition_from_dict(raw: Any, where: str) -> Condition:
    if not isinstance(raw, dict):
        raise SearchSpaceError(f"{where}: 'condition' must be a mapping with 'parent' and 'values', got {raw!r}")
    unknown = sorted(set(raw) - _CONDITION_KEYS)
    if unknown:
        raise SearchSpaceError(f"{where}: condition has unknown key(s) {unknown}; allowed: {sorted(_CONDITION_KEYS)}")
    for key in sorted(_CONDITION_KEYS):
        if key not in raw:
            raise SearchSpaceError(f"{where}: condition lacks key {key!r}")
    if not isinstance(raw["values"], list):
        raise SearchSpaceError(f"{where}: condition 'values' must be a list, got {raw['values']!r}")
    try:
        return Condition(raw["parent"], tuple(raw["values"]))
    except SearchSpaceError as exc:
        raise SearchSpaceError(f"{where}: {exc}") from None


def space_from_dict(data: Any, source: str = "<dict>") -> SearchSpace:
    """Build a space from plain data, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{source}: top level must be a mapping with 'decisions', got {type(data).__name__}")
    unknown = sorted(set(data) - _SPACE_KEYS)
    if unknown:
        raise SearchSpaceError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(_SPACE_KEYS)}")
    if "decisions" not in data:
        raise SearchSpaceError(f"{source}: missing key 'decisions'")
    raw_decisions = data["decisions"]
    if not isinstance(raw_decisions, list):
        raise SearchSpaceError(f"{source}: 'decisions' must be a list, got {type(raw_decisions).__name__}")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str):
        raise SearchSpaceError(f"{source}: 'name' must be a string, got {name!r}")
    decisions = []
    for position, raw in enumerate(raw_decisions):
        where = f"{source}: decisions[{position}]"
        if not isinstance(raw, dict):
            raise SearchSpaceError(f"{where} must be a mapping with 'name' and 'choices', got {raw!r}")
        unknown = sorted(set(raw) - _DECISION_KEYS)
        if unknown:
            raise SearchSpaceError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_DECISION_KEYS)}")
        for key in ("name", "choices"):
            if key not in raw:
                raise SearchSpaceError(f"{where}: missing key {key!r}")
        if not isinstance(raw["choices"], list):
            raise SearchSpaceError(f"{where} ({raw['name']!r}): 'choices' must be a list, got {raw['choices']!r}")
        try:
            condition = None
            if "condition" in raw:
                condition = _condition_from_dict(raw["condition"], f"decisions[{position}] ({raw['name']!r})")
            decisions.append(
                Decision(raw["name"], tuple(raw["choices"]), str(raw.get("description", "")), condition)
            )
        except SearchSpaceError as exc:
            raise SearchSpaceError(f"{source}: {exc}") from None
    try:
        return SearchSpace(name, tuple(decisions))
    except SearchSpaceError as exc:
        raise SearchSpaceError(f"{source}: {exc}") from None


def load_space(path: str | Path) -> SearchSpace:
    """Read a space from a .yaml/.yml/.json file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SearchSpaceError(f"search-space file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SearchSpaceError(f"search-space file {path} is unreadable: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SearchSpaceError(f"search-space file {path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}".replace("\n", " ")) from None
    return space_from_dict(data, source=str(path))


def save_space(space: SearchSpace, path: str | Path) -> None:
    path = Path(path)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(space.to_dict(), indent=2) + "\n", encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False), encoding="utf-8")

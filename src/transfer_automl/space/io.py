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


def _short(value: Any, limit: int = 120) -> str:
    """A value for an error message: a file's content may be huge."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _condition_from_dict(raw: Any, where: str) -> Condition:
    if not isinstance(raw, dict):
        raise SearchSpaceError(f"{where}: 'condition' must be a mapping with 'parent' and 'values', got {_short(raw)}")
    unknown = sorted(set(raw) - _CONDITION_KEYS)
    if unknown:
        raise SearchSpaceError(f"{where}: condition has unknown key(s) {unknown}; allowed: {sorted(_CONDITION_KEYS)}")
    for key in sorted(_CONDITION_KEYS):
        if key not in raw:
            raise SearchSpaceError(f"{where}: condition lacks key {key!r}")
    if not isinstance(raw["values"], list):
        raise SearchSpaceError(f"{where}: condition 'values' must be a list, got {_short(raw['values'])}")
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
        raise SearchSpaceError(f"{source}: 'name' must be a string, got {_short(name)}")
    decisions = []
    for position, raw in enumerate(raw_decisions):
        where = f"{source}: decisions[{position}]"
        if not isinstance(raw, dict):
            raise SearchSpaceError(f"{where} must be a mapping with 'name' and 'choices', got {_short(raw)}")
        unknown = sorted(set(raw) - _DECISION_KEYS)
        if unknown:
            raise SearchSpaceError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_DECISION_KEYS)}")
        for key in ("name", "choices"):
            if key not in raw:
                raise SearchSpaceError(f"{where}: missing key {key!r}")
        if not isinstance(raw["choices"], list):
            raise SearchSpaceError(f"{where} ({_short(raw['name'])}): 'choices' must be a list, got {_short(raw['choices'])}")
        if not isinstance(raw.get("description", ""), str):
            raise SearchSpaceError(f"{where} ({_short(raw['name'])}): 'description' must be text, got "
                                   f"{type(raw['description']).__name__}")
        try:
            condition = None
            if "condition" in raw:
                condition = _condition_from_dict(raw["condition"], f"decisions[{position}] ({raw['name']!r})")
            decisions.append(
                Decision(raw["name"], tuple(raw["choices"]), raw.get("description", ""), condition)
            )
        except SearchSpaceError as exc:
            raise SearchSpaceError(f"{source}: {exc}") from None
    try:
        return SearchSpace(name, tuple(decisions))
    except SearchSpaceError as exc:
        raise SearchSpaceError(f"{source}: {exc}") from None


class _LimitedLoader(_Loader):
    """Counts aliases and nesting while composing, so a file of nested aliases (a "billion laughs")
    or of deep nesting is refused before it is expanded."""

    max_aliases = 100
    max_depth = 32

    def __init__(self, stream: str):
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self.max_aliases:
                raise SearchSpaceError(f"more than {self.max_aliases} aliases (TAML_MAX_YAML_ALIASES)")
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise SearchSpaceError(f"nested deeper than {self.max_depth} levels (TAML_MAX_NESTING)")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _depth(data: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, stopping past `limit` (iterative: no recursion to exhaust)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


_MAX_EXPANDED = 1_000_000  # values a space file may expand to; real spaces have hundreds


def _expanded_size(item: Any, seen: dict[int, int]) -> int:
    """How many values `item` would be written out as, each shared (aliased) node counted every
    time it is referred to; memoized by identity, so it costs one pass over the distinct nodes.
    Recursion is bounded by the nesting limit the loader already enforced."""
    if not isinstance(item, dict | list):
        return 1
    if id(item) not in seen:
        children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
        seen[id(item)] = 1 + sum(_expanded_size(child, seen) for child in children)
    return seen[id(item)]


def load_space(path: str | Path) -> SearchSpace:
    """Read a space from a .yaml/.yml/.json file, within the input limits (transfer_automl.limits)."""
    from transfer_automl.limits import check_regular_file, limits

    path = Path(path)
    bounds = limits()
    check_regular_file(path, "search-space file", SearchSpaceError, bounds.max_space_bytes, "TAML_MAX_SPACE_BYTES")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SearchSpaceError(f"search-space file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SearchSpaceError(f"search-space file {path} is unreadable: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            if _depth(data, bounds.max_nesting) > bounds.max_nesting:
                raise SearchSpaceError(f"nested deeper than {bounds.max_nesting} levels (TAML_MAX_NESTING)")
        else:
            loader = _LimitedLoader(text)
            loader.max_aliases, loader.max_depth = bounds.max_yaml_aliases, bounds.max_nesting
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
            if _expanded_size(data, {}) > _MAX_EXPANDED:  # aliases share nodes; expanded, they multiply
                raise SearchSpaceError(f"its aliases expand to more than {_MAX_EXPANDED:,} values")
    except SearchSpaceError as exc:
        raise SearchSpaceError(f"search-space file {path}: {exc}") from None
    except RecursionError:
        raise SearchSpaceError(f"search-space file {path}: nested too deeply to read") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SearchSpaceError(f"search-space file {path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}".replace("\n", " ")) from None
    return space_from_dict(data, source=str(path))


def save_space(space: SearchSpace, path: str | Path) -> None:
    path = Path(path)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(space.to_dict(), indent=2) + "\n", encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False), encoding="utf-8")

"""`Registry[T]`: one name -> implementation map for every pluggable interface.

Search methods, update rules, controller kinds, input modules, task distances and built-in
search spaces are each one `Registry`. A registry is a read-only `Mapping[str, T]` (`name in R`,
`R[name]`, `sorted(R)`, `R.items()` all work) that only grows through `register`, which refuses a
name taken already, so a plugin cannot silently replace a built-in (nevergrad's `Registry`,
Optuna's sampler names):

    SEARCHES: Registry[type[Search]] = Registry("search method")

    @SEARCHES.decorator("rs")
    class RandomSearch(Search): ...

    SEARCHES.get("nope")  # ConfigError: unknown search method 'nope'; available: ['rs']

Depends on nothing but `errors`, so every layer (`space/` included, which imports no torch) can
hold one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

from transfer_automl.errors import ConfigError

T = TypeVar("T")
C = TypeVar("C")
D = TypeVar("D")

_MISSING: Any = object()


class Registry(Mapping[str, T], Generic[T]):
    """Names -> implementations of one interface; `kind` names the interface in messages."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        """Add `obj` under `name` and return it; a name can be registered once."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def decorator(self, name: str) -> Callable[[C], C]:
        """`@registry.decorator(name)`: register the decorated class (or function) under `name`."""

        def wrap(obj: C) -> C:
            self.register(name, obj)  # type: ignore[arg-type]
            return obj

        return wrap

    @overload
    def get(self, name: str) -> T: ...

    @overload
    def get(self, name: str, default: D) -> T | D: ...

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """The implementation called `name`; ConfigError naming the available ones if there is none.

        With `default`, behaves like `Mapping.get` (returns `default` for an unknown name)."""
        if name in self._items:
            return self._items[name]
        if default is not _MISSING:
            return default
        raise ConfigError(f"unknown {self.kind} {name!r}; available: {sorted(self._items)}")

    # -- Mapping -----------------------------------------------------------------------------

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"

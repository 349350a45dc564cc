"""`Registry[T]`: a read-only Mapping that refuses a second registration of a name and names the
available ones when asked for an unknown name; every name -> implementation map is one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

import pytest

from transfer_automl.errors import ConfigError, TamlError
from transfer_automl.registry import Registry


def fruit_registry() -> Registry[int]:
    fruits: Registry[int] = Registry("fruit")
    fruits.register("pear", 2)
    fruits.register("apple", 1)
    return fruits


def test_a_registry_is_a_read_only_mapping():
    fruits = fruit_registry()
    assert isinstance(fruits, Mapping)
    assert "apple" in fruits and "plum" not in fruits and 3 not in fruits
    assert fruits["pear"] == 2 and len(fruits) == 2
    assert list(fruits) == ["pear", "apple"]  # registration order
    assert sorted(fruits) == ["apple", "pear"]
    assert dict(fruits.items()) == {"pear": 2, "apple": 1} and list(fruits.values()) == [2, 1]
    assert fruits == {"pear": 2, "apple": 1}
    with pytest.raises(KeyError):
        fruits["plum"]
    with pytest.raises(TypeError):
        fruits["plum"] = 3  # type: ignore[index]
    with pytest.raises(TypeError):
        del fruits["pear"]  # type: ignore[attr-defined]
    assert repr(fruits) == "Registry('fruit', ['apple', 'pear'])"


def test_register_returns_the_object_and_refuses_a_duplicate_name():
    fruits = fruit_registry()
    assert fruits.register("plum", 3) == 3
    with pytest.raises(ValueError, match="fruit 'pear' is already registered"):
        fruits.register("pear", 9)
    assert fruits["pear"] == 2  # the first registration stands
    for bad in ("", None, 5):
        with pytest.raises(ValueError, match="fruit needs a non-empty string name"):
            fruits.register(bad, 0)  # type: ignore[arg-type]


def test_get_names_the_kind_the_value_and_the_available_names():
    fruits = fruit_registry()
    assert fruits.get("apple") == 1
    with pytest.raises(ConfigError) as info:
        fruits.get("plum")
    assert str(info.value) == "unknown fruit 'plum'; available: ['apple', 'pear']"
    assert isinstance(info.value, ValueError) and isinstance(info.value, TamlError)
    assert fruits.get("plum", None) is None and fruits.get("plum", 0) == 0  # Mapping.get with a default


def test_the_decorator_registers_a_class_and_returns_it_unchanged():
    shapes: Registry[type] = Registry("shape")

    @shapes.decorator("square")
    class Square:
        pass

    assert shapes["square"] is Square and Square.__name__ == "Square"
    with pytest.raises(ValueError, match="shape 'square' is already registered"):
        shapes.decorator("square")(type("Other", (), {}))


def test_every_name_to_implementation_map_is_a_registry():
    from transfer_automl.algorithms import UPDATE_RULES
    from transfer_automl.children.embeddings import MODULES
    from transfer_automl.children.image_modules import IMAGE_MODULES
    from transfer_automl.controllers import CONTROLLERS
    from transfer_automl.search import SEARCHES
    from transfer_automl.space import BUILTIN_SPACES
    from transfer_automl.tasks.benchmarks import BENCHMARKS
    from transfer_automl.transfer import DISTANCES

    kinds = {
        "search method": SEARCHES, "update rule": UPDATE_RULES, "controller kind": CONTROLLERS,
        "input module": MODULES, "image input module": IMAGE_MODULES, "task distance": DISTANCES,
        "built-in search space": BUILTIN_SPACES, "benchmark": BENCHMARKS,
    }
    for kind, registry in kinds.items():
        assert isinstance(registry, Registry) and registry.kind == kind and len(registry) > 0
        with pytest.raises(ConfigError, match=f"unknown {kind} 'nope'; available: "):
            registry.get("nope")
        name = next(iter(registry))
        with pytest.raises(ValueError, match="already registered"):
            registry.register(name, registry[name])


@pytest.mark.slow
def test_the_registry_module_loads_without_torch():
    code = "import sys, transfer_automl.registry; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

"""Every hand-off of every compiled pipeline is one the KFP v2 backend accepts.

`kfp.local` does not check parameter types; the backend's driver does, when the run is already on
the cluster. This test walks the pipeline IR and applies the driver's rules to every task input:
each input parameter of each task (root DAG, ParallelFor bodies, nested pipelines), and every
ParallelFor item, against the consumer's declared parameter type.

The rules, from kubeflow/pipelines backend/src/v2/driver (commit 7b70c7b9, 2.x):

* resolve.go `resolveInputs`, iteration driver: the loop item is `items[i]` of the LIST the
  iterator gets (util.go `getItems`: a ListValue's values, or a JSON string parsed as a list), and
  is then validated against the *loop DAG's* input definition of the item
  (`handleParamTypeValidationAndConversion`). The SDK declares that item's type from the items'
  annotation (sdk/python/kfp/dsl/for_loop.py `_get_loop_item_type`: `List[X]` gives X, a plain
  `list` gives 'String'). A STRING declaration turns the item into its JSON text.
* resolve.go `handleParamTypeValidationAndConversion`, every driver: a STRING input accepts any
  value (a non-string is converted to its JSON text: `metadata.PbValueToText`); any other type
  accepts only its own kind: a string value gives "input parameter %q type mismatch: expect
  STRUCT, got string" ("TODO(Bobgy): consider whether we support parsing string as JSON for any
  other types"); a number is accepted by NUMBER_INTEGER and NUMBER_DOUBLE alike; a struct by
  STRUCT (and TASK_FINAL_STATUS, TASK_CONFIG).
* A value's kind is the declared type of where it comes from: a task's output parameter is
  parsed by the launcher as its declared output type; an enclosing DAG's input as that DAG's
  declared input type (after the rule above); a constant is its JSON kind.
"""

# No `from __future__ import annotations`: kfp reads the test components' annotations as types.
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

COMPILED = REPO / "pipelines" / "compiled"
PIPELINES = ["multitask_search", "scheduled_retraining", "transfer_search"]

NUMBERS = {"NUMBER_INTEGER", "NUMBER_DOUBLE"}
STRUCTS = {"STRUCT", "TASK_FINAL_STATUS", "TASK_CONFIG"}


def accepts(consumer: str, value_kind: str) -> bool:
    """Whether an input declared `consumer` accepts a value of kind `value_kind` (resolve.go)."""
    if consumer == "STRING":
        return True  # any value, converted to its JSON text
    if value_kind == "STRING":
        return False  # "type mismatch: expect <T>, got string"
    if consumer in NUMBERS:
        return value_kind in NUMBERS
    if consumer in STRUCTS:
        return value_kind == "STRUCT"
    return consumer == value_kind  # LIST, BOOLEAN


def _constant_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, (int, float)):
        return "NUMBER_DOUBLE"
    if isinstance(value, str):
        return "STRING"
    return "LIST" if isinstance(value, list) else "STRUCT"


def _params(definitions: dict | None) -> dict[str, str]:
    return {k: v["parameterType"] for k, v in ((definitions or {}).get("parameters") or {}).items()}


def type_errors(spec: dict) -> list[str]:
    """Every hand-off of the pipeline spec (IR) the v2 driver would refuse, as messages."""
    components = spec["components"]
    dags = [("root", spec["root"]), *((name, c) for name, c in components.items() if "dag" in c)]
    errors = []
    for dag_name, dag_component in dags:
        dag_inputs = _params(dag_component.get("inputDefinitions"))
        tasks = dag_component["dag"]["tasks"]
        for task_name, task in tasks.items():
            consumer = components[task["componentRef"]["name"]]
            declared = _params(consumer.get("inputDefinitions"))
            iterator = task.get("parameterIterator")
            if iterator:  # the loop DAG's item: items[i] of a LIST, validated as the item's declared type
                items = iterator["items"].get("inputParameter")
                item_type = declared.get(iterator["itemInput"])
                if items is not None and declared.get(items) != "LIST":
                    errors.append(f"{dag_name}/{task_name}: ParallelFor items {items!r} are "
                                  f"{declared.get(items)}, not LIST")
                if item_type is None:
                    errors.append(f"{dag_name}/{task_name}: loop item {iterator['itemInput']!r} is not declared")
            for name, source in (task.get("inputs", {}).get("parameters") or {}).items():
                want = declared.get(name)
                where = f"{dag_name}/{task_name}.{name}"
                if want is None:
                    errors.append(f"{where}: not an input of {task['componentRef']['name']}")
                    continue
                if "componentInputParameter" in source:
                    kind = dag_inputs.get(source["componentInputParameter"])
                    origin = f"input {source['componentInputParameter']!r} of {dag_name}"
                elif "taskOutputParameter" in source:
                    ref = source["taskOutputParameter"]
                    producer = components[tasks[ref["producerTask"]]["componentRef"]["name"]]
                    kind = _params(producer.get("outputDefinitions")).get(ref["outputParameterKey"])
                    origin = f"output {ref['outputParameterKey']!r} of {ref['producerTask']}"
                elif "runtimeValue" in source:
                    kind = _constant_kind(source["runtimeValue"]["constant"])
                    origin = "a constant"
                elif "taskFinalStatus" in source:
                    kind, origin = "STRUCT", "a task's final status"
                else:
                    errors.append(f"{where}: an input source this test does not know: {sorted(source)}")
                    continue
                if kind is None:
                    errors.append(f"{where}: {origin} is not declared")
                elif not accepts(want, kind):
                    errors.append(f"{where}: expects {want}, gets {kind} from {origin}")
    return errors


def loop_items(spec: dict) -> list[tuple[str, str, str]]:
    """(loop DAG, item type, consumer's input type) for every task input fed by a loop item."""
    out = []
    components = spec["components"]
    for dag in [spec["root"], *(c for c in components.values() if "dag" in c)]:
        for task in dag["dag"]["tasks"].values():
            iterator = task.get("parameterIterator")
            if not iterator:
                continue
            body = components[task["componentRef"]["name"]]
            item_type = _params(body["inputDefinitions"])[iterator["itemInput"]]
            for inner in body["dag"]["tasks"].values():
                inputs = _params(components[inner["componentRef"]["name"]].get("inputDefinitions"))
                for name, source in (inner.get("inputs", {}).get("parameters") or {}).items():
                    if source.get("componentInputParameter") == iterator["itemInput"]:
                        out.append((task["componentRef"]["name"], item_type, inputs[name]))
    return out


def _spec(path: Path) -> dict:
    return next(d for d in yaml.safe_load_all(path.read_text()) if d and "root" in d)


@pytest.mark.parametrize("name", PIPELINES)
def test_every_hand_off_is_one_the_v2_driver_accepts(name):
    spec = _spec(COMPILED / f"{name}.yaml")
    assert type_errors(spec) == []
    items = loop_items(spec)
    assert items, "every search pipeline has its rounds' ParallelFor"
    assert all(item == "STRUCT" and consumer == "STRUCT" for _, item, consumer in items), items


def test_the_rules_are_the_drivers():
    assert accepts("STRING", "STRUCT") and accepts("STRING", "LIST")  # PbValueToText
    assert not accepts("STRUCT", "STRING") and not accepts("LIST", "STRING")
    assert accepts("NUMBER_DOUBLE", "NUMBER_INTEGER") and accepts("NUMBER_INTEGER", "NUMBER_DOUBLE")
    assert not accepts("BOOLEAN", "NUMBER_INTEGER") and not accepts("LIST", "STRUCT")


def test_an_untyped_list_feeding_a_dict_input_is_refused(tmp_path):
    """The first build's controller_step (`-> list`) feeding train_child (`trial: dict`): the SDK
    declares the loop item STRING, the driver turns each dict into its JSON text and refuses it
    for the STRUCT input. The typed version passes."""
    from typing import Any as AnyT

    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def ask_untyped(n: int) -> list:
        return [{"i": i} for i in range(n)]

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def ask_typed(n: int) -> list[dict[str, AnyT]]:
        return [{"i": i} for i in range(n)]

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def train(trial: dict) -> dict:
        return trial

    def pipeline(ask):
        @dsl.pipeline(name="p")
        def p():
            asked = ask(n=2)
            with dsl.ParallelFor(asked.output) as trial:
                train(trial=trial)

        return p

    for ask, ok in ((ask_untyped, False), (ask_typed, True)):
        path = tmp_path / f"{ask.name}.yaml"
        compiler.Compiler().compile(pipeline(ask), str(path))
        errors = type_errors(_spec(path))
        if ok:
            assert errors == []
        else:
            assert len(errors) == 1 and "trial: expects STRUCT, gets STRING" in errors[0], errors

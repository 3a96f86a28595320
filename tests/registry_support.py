"""ONNX files and users for the registry tests (plain functions, imported by the tests)."""

from __future__ import annotations

import importlib
from pathlib import Path

import onnx
from onnx import TensorProto, helper

DATA_SCIENTISTS = "Data scientists"
LABELLERS = "Labellers"
RELEASE_MANAGERS = "Release managers"

# A model this project did not build: two inputs of different dtypes (float32 and int64),
# shipped with the onnx package's backend test data.
ONNX_BACKEND_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
EXPAND_MODEL = ONNX_BACKEND_DATA / "simple" / "test_expand_shape_model1" / "model.onnx"
# A symbolic dimension ("n") and an int64 input.
SEQUENCE_MODEL = ONNX_BACKEND_DATA / "simple" / "test_sequence_model8" / "model.onnx"


def variant_bytes(path: Path, doc: str) -> bytes:
    """The same graph with another doc string: a different file (new sha256)."""
    model = onnx.load(str(path))
    model.doc_string = doc
    return model.SerializeToString()


def onnx_with_external_data(location: str) -> bytes:
    """A valid graph whose weight claims to live in an external file at ``location``."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "12")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def onnx_without_inputs() -> bytes:
    """A model that runs (a constant) but takes no input."""
    value = helper.make_tensor("c", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=value)],
        "constant",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def data_scientists_group_ensure() -> None:
    """Run the migration's step again: a transactional test elsewhere may have flushed it."""
    from django.apps import apps

    migration = importlib.import_module("models_registry.migrations.0002_data_scientists_group")
    migration.create_group(apps, None)


def labellers_group_ensure() -> None:
    """Migration 0009's "Labellers" group again (a transactional test may have flushed it)."""
    from django.apps import apps

    migration = importlib.import_module("monitoring.migrations.0009_prediction_owner_label_guards")
    migration.create_group(apps, None)


def release_managers_group_ensure() -> None:
    """Migration 0004's "Release managers" group again (see ``labellers_group_ensure``)."""
    from django.apps import apps

    migration = importlib.import_module(
        "models_registry.migrations.0004_audit_trail_beyond_registry"
    )
    migration.create_group(apps, None)


def make_member(django_user_model: type, username: str, group: str, **extra: object) -> object:
    """A user (password "pw-<username>-12345") in ``group``, which is ensured first."""
    from django.contrib.auth.models import Group

    {LABELLERS: labellers_group_ensure, RELEASE_MANAGERS: release_managers_group_ensure}[group]()
    user = django_user_model.objects.create_user(
        username=username, password=f"pw-{username}-12345", **extra
    )
    user.groups.add(Group.objects.get(name=group))
    return user


def make_data_scientist(
    django_user_model: type, username: str = "ds", *, password: str = "pw-ds-12345"
) -> object:
    from django.contrib.auth.models import Group

    data_scientists_group_ensure()
    user = django_user_model.objects.create_user(username=username, password=password)
    user.groups.add(Group.objects.get(name=DATA_SCIENTISTS))
    return user


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

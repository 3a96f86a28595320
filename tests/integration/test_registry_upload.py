"""Registering ONNX files: what is accepted, what is refused, and that refusals store nothing."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from models_registry import selectors, services
from models_registry.exceptions import (
    DuplicateModel,
    InvalidModelFile,
    InvalidReferenceData,
    ModelTooLarge,
    VersionExists,
)
from models_registry.models import AuditAction, AuditEvent, ModelVersion, RegisteredModel
from tests.registry_support import (
    EXPAND_MODEL,
    SEQUENCE_MODEL,
    onnx_with_external_data,
    onnx_without_inputs,
    stored_files,
    variant_bytes,
)

pytestmark = pytest.mark.django_db


def test_register_reads_signature_and_stores_content_addressed(tiny_onnx_model, media) -> None:
    version = services.model_version_register(model_name="risk", file=tiny_onnx_model)

    assert version.version == "1"
    assert version.stage == "dev"
    assert version.signature["inputs"] == [{"name": "X", "dtype": "float32", "shape": [None, 3]}]
    assert [o["name"] for o in version.signature["outputs"]] == ["label", "probabilities"]
    assert version.feature_names == ["x1", "x2", "x3"]
    assert version.framework["producer_name"] == "skl2onnx"
    assert version.file.name == f"models/risk/{version.sha256}/model.onnx"
    assert (media / version.file.name).read_bytes() == tiny_onnx_model.read_bytes()
    assert version.size_bytes == tiny_onnx_model.stat().st_size
    event = AuditEvent.objects.get(action=AuditAction.UPLOAD)
    assert (event.model_name, event.version, event.to_value) == ("risk", "1", "dev")
    assert event.details["sha256"] == version.sha256


def test_versions_are_numbered_and_never_reused(tiny_onnx_model, media) -> None:
    first = services.model_version_register(model_name="risk", file=tiny_onnx_model)
    second = services.model_version_register(
        model_name="risk", file=io.BytesIO(variant_bytes(tiny_onnx_model, "b"))
    )
    services.model_version_delete(version=second)
    third = services.model_version_register(
        model_name="risk", file=io.BytesIO(variant_bytes(tiny_onnx_model, "c"))
    )

    assert (first.version, second.version, third.version) == ("1", "2", "3")


def test_model_this_project_did_not_build_gets_its_own_signature(media) -> None:
    version = services.model_version_register(model_name="expand", file=EXPAND_MODEL)

    assert version.signature["inputs"] == [
        {"name": "X", "dtype": "float32", "shape": [1, 3, 1]},
        {"name": "shape", "dtype": "int64", "shape": [2]},
    ]
    assert version.signature["outputs"] == [{"name": "Y", "dtype": "float32", "shape": [1, 3, 1]}]
    # Neither input is one tabular column: no feature names are invented.
    assert version.feature_names == []


def test_symbolic_dimension_is_dynamic_and_one_column_inputs_name_the_features(media) -> None:
    version = services.model_version_register(model_name="sequence", file=SEQUENCE_MODEL)

    assert version.signature["inputs"] == [
        {"name": "X", "dtype": "float32", "shape": [None]},
        {"name": "Splits", "dtype": "int64", "shape": [3]},
    ]
    assert version.signature["outputs"][0]["dtype"] == "int64"
    assert version.feature_names == ["X", "Splits"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("truncated", "not an ONNX model", id="truncated-onnx"),
        pytest.param(
            b"name,age\nalice,41\n",
            "not an ONNX model|onnxruntime could not load",
            id="text-file-renamed-onnx",
        ),
        pytest.param(onnx_without_inputs(), "no inputs", id="no-inputs"),
    ],
)
def test_refuses_files_that_are_not_usable_models(
    tiny_onnx_model, media, content: object, message: str
) -> None:
    data = tiny_onnx_model.read_bytes()
    body = data[: len(data) // 2] if content == "truncated" else content
    upload = io.BytesIO(body)  # type: ignore[arg-type]
    upload.name = "model.onnx"
    upload.content_type = "application/octet-stream"  # type: ignore[attr-defined]

    with pytest.raises(InvalidModelFile, match=message):
        services.model_version_register(model_name="risk", file=upload, filename="model.onnx")

    assert not RegisteredModel.objects.exists()
    assert not AuditEvent.objects.exists()
    assert stored_files(media) == []


@pytest.mark.parametrize("allowed", [False, True])
def test_refuses_external_data_outside_its_folder(settings, media, allowed: bool) -> None:
    settings.PHOENIX_ALLOW_EXTERNAL_DATA = allowed

    with pytest.raises(InvalidModelFile, match="external data") as refused:
        services.model_version_register(
            model_name="sneaky", file=io.BytesIO(onnx_with_external_data("../../etc/passwd"))
        )

    assert "passwd" in str(refused.value.details)
    assert stored_files(media) == []


def test_external_data_inside_its_folder_is_stored_beside_the_model(
    settings, media, tmp_path
) -> None:
    settings.PHOENIX_ALLOW_EXTERNAL_DATA = True
    folder = tmp_path / "export"
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "w.bin").write_bytes(np.array([1, 2, 3], dtype=np.float32).tobytes())
    (folder / "model.onnx").write_bytes(onnx_with_external_data("weights/w.bin"))

    version = services.model_version_register(model_name="split", file=folder / "model.onnx")

    assert version.framework["external_data"] == ["weights/w.bin"]
    assert stored_files(media) == [
        f"models/split/{version.sha256}/model.onnx",
        f"models/split/{version.sha256}/weights/w.bin",
    ]


def test_external_data_is_refused_by_default_even_inside_its_folder(media, tmp_path) -> None:
    (tmp_path / "w.bin").write_bytes(b"\0" * 12)
    (tmp_path / "model.onnx").write_bytes(onnx_with_external_data("w.bin"))

    with pytest.raises(InvalidModelFile, match="PHOENIX_ALLOW_EXTERNAL_DATA"):
        services.model_version_register(model_name="split", file=tmp_path / "model.onnx")


def test_refuses_oversized_upload(settings, tiny_onnx_model, media) -> None:
    settings.PHOENIX_MODEL_MAX_BYTES = 100

    with pytest.raises(ModelTooLarge, match="100 bytes"):
        services.model_version_register(model_name="risk", file=tiny_onnx_model)

    assert stored_files(media) == []


def test_refuses_the_same_bytes_twice_for_one_model(tiny_onnx_model, media) -> None:
    services.model_version_register(model_name="risk", file=tiny_onnx_model)

    with pytest.raises(DuplicateModel, match="version 1"):
        services.model_version_register(
            model_name="risk", file=io.BytesIO(tiny_onnx_model.read_bytes()), version="9"
        )
    # Another model may hold the same file.
    services.model_version_register(model_name="other", file=tiny_onnx_model)

    assert ModelVersion.objects.count() == 2


def test_refuses_an_existing_version_number(tiny_onnx_model, media) -> None:
    services.model_version_register(model_name="risk", file=tiny_onnx_model, version="v1")

    with pytest.raises(VersionExists):
        services.model_version_register(
            model_name="risk",
            file=io.BytesIO(variant_bytes(tiny_onnx_model, "b")),
            version="v1",
        )


def test_failure_after_storing_removes_the_file(tiny_onnx_model, media, monkeypatch) -> None:
    def broken_audit(**kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "_audit", broken_audit)

    with pytest.raises(RuntimeError):
        services.model_version_register(
            model_name="risk",
            file=tiny_onnx_model,
            reference=io.BytesIO(b"x1,x2,x3\n1,2,3\n"),
            reference_filename="ref.csv",
        )

    assert not ModelVersion.objects.exists()
    assert stored_files(media) == []


def test_reference_csv_in_any_column_order_loads_in_feature_order(tiny_onnx_model, media) -> None:
    csv = b"x3,x1,x2\n3,1,2\n6,4,5\n"
    version = services.model_version_register(
        model_name="risk",
        file=tiny_onnx_model,
        reference=io.BytesIO(csv),
        reference_filename="train.csv",
    )

    table, names = selectors.reference_data_load(version=version)

    assert version.reference_rows == 2
    assert names == ["x1", "x2", "x3"]
    np.testing.assert_array_equal(table, [[1, 2, 3], [4, 5, 6]])


def test_reference_npy_attached_later_replaces_the_old_one(
    tiny_onnx_model, media, django_capture_on_commit_callbacks
) -> None:
    version = services.model_version_register(
        model_name="risk",
        file=tiny_onnx_model,
        reference=io.BytesIO(b"x1,x2,x3\n1,2,3\n"),
        reference_filename="a.csv",
    )
    buffer = io.BytesIO()
    np.save(buffer, np.arange(12, dtype=np.float32).reshape(4, 3))

    with django_capture_on_commit_callbacks(execute=True):
        services.reference_data_attach(version=version, file=buffer, filename="b.npy")

    table, _ = selectors.reference_data_load(version=version)
    assert table.shape == (4, 3)
    assert version.reference_rows == 4
    assert [f for f in stored_files(media) if f.startswith("reference/")] == [
        "reference/risk/1/reference.npy"
    ]
    assert AuditEvent.objects.filter(action=AuditAction.REFERENCE).count() == 2


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("r.csv", b"x1,x2\n1,2\n", "3 features"),
        ("r.csv", b"x1,x2,income\n1,2,3\n", "income"),
        ("r.csv", b"x1,x2,x3\n1,two,3\n", "'two' is not a number"),
        ("r.csv", b"x1,x2,x3\n", "no rows"),
        ("r.parquet", b"PAR1", ".csv file with a header or a .npy"),
        ("r.npy", b"not numpy", "not a .npy"),
    ],
)
def test_reference_data_is_checked_against_the_features(
    tiny_onnx_model, media, filename: str, content: bytes, message: str
) -> None:
    with pytest.raises(InvalidReferenceData, match=message):
        services.model_version_register(
            model_name="risk",
            file=tiny_onnx_model,
            reference=io.BytesIO(content),
            reference_filename=filename,
        )

    assert not ModelVersion.objects.exists()
    assert stored_files(media) == []


def test_reference_npy_must_have_one_column_per_feature(tiny_onnx_model, media) -> None:
    version = services.model_version_register(model_name="risk", file=tiny_onnx_model)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((5, 4)))

    with pytest.raises(InvalidReferenceData, match=r"rows x 3 features"):
        services.reference_data_attach(version=version, file=buffer, filename="r.npy")


def _text_model(tmp_path: Any, *, portable: bool) -> Any:
    """A tf-idf text model with lowercasing in the graph (skl2onnx: a StringNormalizer
    that asks for en_US.UTF-8), its locale made portable or not."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from phoenix.demo.support_tickets import portable_locale

    pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=200))
    pipeline.fit(["Refund my card", "App crashes", "Reset password"] * 3, [0, 1, 2] * 3)
    model = to_onnx(
        pipeline,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        target_opset=17,
    )
    if portable:
        assert portable_locale(model) == 1
    path = tmp_path / "text.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_text_model_whose_locale_is_missing_is_refused_naming_the_locale_and_the_fixes(
    media, tmp_path
) -> None:
    import locale

    try:
        locale.setlocale(locale.LC_CTYPE, "en_US.UTF-8")
    except locale.Error:
        pass
    else:
        locale.setlocale(locale.LC_CTYPE, "")
        pytest.skip("en_US.UTF-8 is installed here: onnxruntime would load the model")

    with pytest.raises(InvalidModelFile) as refused:
        services.model_version_register(
            model_name="tickets", file=_text_model(tmp_path, portable=False)
        )

    message = refused.value.message
    assert "en_US.UTF-8" in message
    assert "C.UTF-8" in message
    assert "lowercase=False" in message
    assert refused.value.details["locales"] == ["en_US.UTF-8"]
    assert not ModelVersion.objects.exists()


def test_text_model_with_a_portable_locale_takes_reference_texts(media, tmp_path) -> None:
    reference = io.BytesIO(b'text\n"Refund, please"\nApp crashes again\n')

    version = services.model_version_register(
        model_name="tickets",
        file=_text_model(tmp_path, portable=True),
        reference=reference,
        reference_filename="reference.csv",
    )

    assert version.signature["inputs"] == [{"name": "text", "dtype": "string", "shape": [None, 1]}]
    assert version.feature_names == ["text"]
    table, names = selectors.reference_data_load(version=version)
    assert names == ["text"]
    assert table[:, 0].tolist() == ["Refund, please", "App crashes again"]

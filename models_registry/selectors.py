"""Registry reads. Views, the inference app and monitoring read the registry through these."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from django.db.models import Prefetch, Q, QuerySet
from google.protobuf.message import DecodeError

from .exceptions import InvalidReferenceData, ModelNotFound, ModelVersionNotFound
from .models import Alias, AuditEvent, ModelAlias, ModelVersion, RegisteredModel
from .output_types import OTHER, OutputType, output_type_read
from .reference_data import reference_suffix, reference_table_read, text_feature_names
from .stages import Stage


def registered_models_list() -> QuerySet[RegisteredModel]:
    """Every model, with its versions (newest first) and aliases prefetched."""
    return RegisteredModel.objects.prefetch_related(
        Prefetch(
            "versions",
            queryset=ModelVersion.objects.select_related("created_by")
            .prefetch_related("aliases")
            .order_by("-created_at", "-id"),
        ),
        Prefetch("aliases", queryset=ModelAlias.objects.select_related("version")),
    )


def registered_model_names() -> list[str]:
    """Every registered model's name, in name order."""
    return list(RegisteredModel.objects.order_by("name").values_list("name", flat=True))


def registered_model_get(*, name: str) -> RegisteredModel:
    """The model called ``name``, prefetched like registered_models_list. Raises ModelNotFound."""
    found = registered_models_list().filter(name=name).first()
    if found is None:
        raise ModelNotFound(f"No model named {name!r}.")
    return found


def model_version_get(*, model_name: str, version: str) -> ModelVersion:
    """Version ``version`` of ``model_name``, with model and aliases loaded.

    Raises ModelNotFound or ModelVersionNotFound.
    """
    found = (
        ModelVersion.objects.select_related("model", "created_by")
        .prefetch_related("aliases")
        .filter(model__name=model_name, version=version)
        .first()
    )
    if found is None:
        registered_model_get(name=model_name)  # says which of the two is missing
        raise ModelVersionNotFound(f"{model_name} has no version {version!r}.")
    return found


def model_versions_list(
    *, model_name: str | None = None, stage: str | None = None
) -> QuerySet[ModelVersion]:
    """Versions, newest first, optionally of one model and/or in one stage."""
    versions = ModelVersion.objects.select_related("model").prefetch_related("aliases")
    if model_name is not None:
        versions = versions.filter(model__name=model_name)
    if stage is not None:
        versions = versions.filter(stage=stage)
    return versions.order_by("model__name", "-created_at", "-id")


def servable_versions() -> list[ModelVersion]:
    """What serving processes load: each model's production version and the holders of
    its champion/challenger aliases, never an archived version."""
    return list(
        ModelVersion.objects.filter(Q(stage=Stage.PRODUCTION) | Q(aliases__alias__in=Alias.values))
        .exclude(stage=Stage.ARCHIVED)
        .select_related("model")
        .prefetch_related("aliases")
        .distinct()
        .order_by("model__name", "version")
    )


def model_aliases(*, model: RegisteredModel) -> dict[str, ModelVersion]:
    """``{"champion": version, ...}`` for the aliases ``model`` has set."""
    rows = ModelAlias.objects.filter(model=model).select_related("version", "version__model")
    return {row.alias: row.version for row in rows}


def reference_data_load(*, version: ModelVersion) -> tuple[np.ndarray, list[str]]:
    """The version's reference data as rows x features and the feature names: float64,
    or an object array with the texts when the model has text inputs.

    Raises InvalidReferenceData when the version has none.
    """
    if not version.reference_data:
        raise InvalidReferenceData(
            f"Version {version.version} of {version.model.name} has no reference data."
        )
    suffix = reference_suffix(version.reference_data.name or "")
    # Read through the storage API so non-local storages work too.
    with tempfile.TemporaryDirectory(prefix="phoenix-reference-") as tmp:
        local = Path(tmp) / f"reference.{suffix}"
        with version.reference_data.open("rb") as source, local.open("wb") as out:
            for chunk in source.chunks():
                out.write(chunk)
        table = reference_table_read(
            local,
            suffix=suffix,
            feature_names=version.feature_names,
            text_features=text_feature_names(version.signature, version.feature_names),
        )
    return table, list(version.feature_names)


def audit_events_list(
    *,
    model_name: str | None = None,
    version: str | None = None,
    actions: Sequence[str] | None = None,
    limit: int | None = None,
) -> QuerySet[AuditEvent]:
    """Audit rows, newest first, optionally for one model and/or version and actions."""
    events = AuditEvent.objects.select_related("actor")
    if model_name is not None:
        events = events.filter(model_name=model_name)
    if version is not None:
        events = events.filter(version=version)
    if actions is not None:
        events = events.filter(action__in=list(actions))
    events = events.order_by("-created_at", "-id")
    return events[:limit] if limit is not None else events


_output_types: dict[str, OutputType] = {}


def model_version_output_type(*, model_name: str, version: str) -> OutputType | None:
    """What the version predicts (classes or a number), or None when the version is gone.

    Read from its ONNX file once per file (keyed by sha256, so a replaced file is read
    again); the graph is parsed, not run.
    """
    stored = (
        ModelVersion.objects.filter(model__name=model_name, version=version)
        .only("sha256", "file")
        .first()
    )
    if stored is None:
        return None
    known = _output_types.get(stored.sha256)
    if known is None:
        try:
            known = output_type_read(Path(stored.file.path))
        except (OSError, DecodeError):
            return OutputType(kind=OTHER)  # the file is gone or unreadable: no type to hold
        _output_types[stored.sha256] = known
    return known

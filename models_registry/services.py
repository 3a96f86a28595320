"""Registry writes: uploads, stage and alias moves, reference data, deletions.

Every entry point (admin, REST, management commands, retraining) goes through these
functions, so the rules hold the same everywhere:

* a file is validated completely (size, ONNX parse, external data, onnxruntime load)
  before anything is stored, and a failed write leaves no file behind;
* stage and alias moves lock the model's row, so concurrent moves serialize and a
  model never has two production versions (the database refuses it too);
* each write leaves ``AuditEvent`` rows and, once committed, publishes
  ``phoenix.change_bus.change_publish`` so serving processes refresh what they serve.
"""

from __future__ import annotations

import functools
import json
import logging
import posixpath
import tempfile
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from phoenix.change_bus import ChangeReason, change_publish
from phoenix.exceptions import InvalidInput

from .exceptions import (
    AliasConflict,
    AliasNotFound,
    DuplicateModel,
    ModelVersionNotFound,
    StageConflict,
    VersionExists,
)
from .file_storage import (
    file_store,
    files_delete_on_commit,
    removed_unless_committed,
    version_storage,
)
from .models import (
    MODEL_NAME_VALIDATOR,
    VERSION_VALIDATOR,
    Alias,
    AuditAction,
    AuditEvent,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    model_version_upload_to,
)
from .onnx_inspection import onnx_model_inspect, stage_file
from .reference_data import reference_suffix, reference_table_read, text_feature_names
from .stages import Stage, allowed_targets, is_move_allowed

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | AnonymousUser | None

# Stages a version may be registered in; archiving something new makes no sense.
INITIAL_STAGES = (Stage.DEV, Stage.STAGING, Stage.PRODUCTION)


# --- small checks -------------------------------------------------------------------


def _validated(value: str, validator: Any, what: str) -> str:
    try:
        validator(value)
    except ValidationError as exc:
        raise InvalidInput(f"Invalid {what} {value!r}: {' '.join(exc.messages)}") from None
    return value


def _stage(value: str, *, choices: tuple[Stage, ...] = tuple(Stage)) -> Stage:
    try:
        stage = Stage(value)
    except ValueError:
        stage = None
    if stage is None or stage not in choices:
        raise InvalidInput(
            f"Unknown stage {value!r}; use one of {', '.join(s.value for s in choices)}."
        )
    return stage


def _alias(value: str) -> str:
    if value not in Alias.values:
        raise InvalidInput(f"Unknown alias {value!r}; use one of {', '.join(Alias.values)}.")
    return value


def _previous_production_stage() -> Stage:
    configured = settings.PHOENIX_PREVIOUS_PRODUCTION_STAGE
    if configured not in (Stage.ARCHIVED, Stage.STAGING):
        raise ImproperlyConfigured(
            "PHOENIX_PREVIOUS_PRODUCTION_STAGE must be 'archived' or 'staging', "
            f"not {configured!r}."
        )
    return Stage(configured)


def _actor(actor: Actor) -> User | None:
    """The user to record, or None for system actions and anonymous callers."""
    if actor is None or not actor.is_authenticated:
        return None
    return cast(User, actor)


# --- audit and broadcast ---------------------------------------------------------------


def _audit(
    *,
    model_name: str,
    version: str,
    action: str,
    actor: Actor,
    from_value: str = "",
    to_value: str = "",
    details: dict[str, Any] | None = None,
    actor_name: str = "",
) -> AuditEvent:
    user = _actor(actor)
    return AuditEvent.objects.create(
        model_name=model_name,
        version=version,
        action=action,
        from_value=from_value,
        to_value=to_value,
        actor=user,
        actor_name=user.get_username() if user is not None else actor_name[:150],
        details=details or {},
    )


def audit_event_record(
    *,
    action: str,
    actor: Actor,
    model_name: str = "",
    version: str = "",
    from_value: Any = "",
    to_value: Any = "",
    actor_name: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit entry for a change outside the registry's own moves (routing
    policies, API keys, sign-ins, relabelling). Values are shown as text, cut to the
    column's 64 characters (the full values go in ``details`` when they matter).
    ``actor_name`` names an actor that is no user (an API key); returns the entry."""
    return _audit(
        model_name=model_name,
        version=version,
        action=action,
        actor=actor,
        from_value=_audit_text(from_value),
        to_value=_audit_text(to_value),
        details=details,
        actor_name=actor_name,
    )


def audit_sign_in(*, user: Actor, address: str = "", via: str = "") -> AuditEvent:
    """Record that ``user`` signed in (dashboards or admin) from ``address``."""
    return audit_event_record(
        action=AuditAction.LOGIN,
        actor=user,
        to_value="signed in",
        details={"address": address, "path": via},
    )


def _audit_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 64 else text[:63] + "\u2026"


def _publish_on_commit(model_name: str, reason: ChangeReason) -> None:
    transaction.on_commit(functools.partial(change_publish, model_name=model_name, reason=reason))


# --- locking --------------------------------------------------------------------------------


def _locked(version: ModelVersion) -> ModelVersion:
    """Lock the version's model row and re-read the version under that lock.

    Every write to a model's versions takes this one lock first, so concurrent moves
    serialize and each sees the previous one's result. Returns the fresh version with
    ``.model`` set to the locked row. Raises ModelVersionNotFound if it was deleted.
    """
    try:
        model = RegisteredModel.objects.select_for_update().get(pk=version.model_id)
        current = ModelVersion.objects.get(pk=version.pk)
    except (RegisteredModel.DoesNotExist, ModelVersion.DoesNotExist):
        raise ModelVersionNotFound(f"Version {version.version} no longer exists.") from None
    current.model = model
    return current


# --- uploads --------------------------------------------------------------------------------


def _source_name(source: IO[bytes] | Path, fallback: str) -> str:
    name = source.name if isinstance(source, Path) else getattr(source, "name", None)
    return PurePosixPath(str(name)).name if name else fallback


def _reference_prepare(
    source: IO[bytes] | Path,
    filename: str,
    feature_names: list[str],
    workdir: Path,
    signature: dict[str, Any],
) -> tuple[Path, str, int]:
    """Stage and check a reference table; returns (staged path, suffix, rows)."""
    suffix = reference_suffix(filename)
    staged = stage_file(
        source,
        workdir / f"reference.{suffix}",
        max_bytes=settings.PHOENIX_MODEL_MAX_BYTES,
        what="reference data file",
    )
    table = reference_table_read(
        staged.path,
        suffix=suffix,
        feature_names=feature_names,
        text_features=text_feature_names(signature, feature_names),
    )
    return staged.path, suffix, int(table.shape[0])


def _reference_store(
    version: ModelVersion, prepared: tuple[Path, str, int], saved: list[str]
) -> str:
    """Save a checked reference table on ``version`` (not yet saved); returns its name."""
    path, suffix, rows = prepared
    with path.open("rb") as handle:
        version.reference_data.save(f"reference.{suffix}", File(handle), save=False)
    name = version.reference_data.name or ""
    saved.append(name)
    version.reference_rows = rows
    return name


def _reference_audit(
    version: ModelVersion, *, actor: Actor, previous: str, filename: str | None
) -> None:
    _audit(
        model_name=version.model.name,
        version=version.version,
        action=AuditAction.REFERENCE,
        actor=actor,
        from_value=posixpath.basename(previous),
        to_value=posixpath.basename(version.reference_data.name or ""),
        details={"rows": version.reference_rows, "filename": filename or ""},
    )


def _next_version(model: RegisteredModel) -> str:
    # Numbers of deleted versions are not reused: the audit log still speaks of them.
    taken = set(model.versions.values_list("version", flat=True))
    taken.update(
        AuditEvent.objects.filter(model_name=model.name, action=AuditAction.UPLOAD).values_list(
            "version", flat=True
        )
    )
    return str(max((int(v) for v in taken if v.isdigit()), default=0) + 1)


def _model_locked(name: str, *, actor: Actor, retraining_recipe: str | None) -> RegisteredModel:
    model, created = RegisteredModel.objects.select_for_update().get_or_create(
        name=name, defaults={"owner": _actor(actor), "retraining_recipe": retraining_recipe or ""}
    )
    if not created and retraining_recipe not in (None, model.retraining_recipe):
        model.retraining_recipe = retraining_recipe or ""
        model.save(update_fields=["retraining_recipe", "updated_at"])
    return model


def model_version_register(
    *,
    model_name: str,
    file: IO[bytes] | Path,
    filename: str = "model.onnx",
    version: str | None = None,
    stage: str = "dev",
    alias: str | None = None,
    reference: IO[bytes] | Path | None = None,
    reference_filename: str | None = None,
    metrics: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    description: str = "",
    actor: Actor = None,
    retraining_recipe: str | None = None,
) -> ModelVersion:
    """Validate an ONNX file and register it as a new version of ``model_name``.

    Creates the RegisteredModel when missing. Returns the saved ModelVersion.
    Raises InvalidInput (bad name, version, stage or alias), InvalidModelFile,
    ModelTooLarge, InvalidReferenceData, DuplicateModel (same bytes already registered
    for this model), VersionExists. On any error nothing is stored.
    """
    _validated(model_name, MODEL_NAME_VALIDATOR, "model name")
    if version is not None:
        _validated(version, VERSION_VALIDATOR, "version")
    initial = _stage(stage, choices=INITIAL_STAGES)
    if alias is not None:
        _alias(alias)

    with tempfile.TemporaryDirectory(prefix="phoenix-upload-") as tmp:
        workdir = Path(tmp)
        inspection = onnx_model_inspect(
            file,
            workdir=workdir / "model",
            max_bytes=settings.PHOENIX_MODEL_MAX_BYTES,
            allow_external_data=settings.PHOENIX_ALLOW_EXTERNAL_DATA,
            memory_budget_bytes=settings.PHOENIX_MODEL_VALIDATION_MEMORY_MB * 1024 * 1024,
            time_budget_s=settings.PHOENIX_MODEL_VALIDATION_TIMEOUT_S,
        )
        prepared = None
        if reference is not None:
            prepared = _reference_prepare(
                reference,
                reference_filename or _source_name(reference, "reference.csv"),
                inspection.feature_names,
                workdir / "reference",
                inspection.signature,
            )

        with removed_unless_committed() as saved, transaction.atomic():
            model = _model_locked(model_name, actor=actor, retraining_recipe=retraining_recipe)
            duplicate = model.versions.filter(sha256=inspection.model.sha256).first()
            if duplicate is not None:
                raise DuplicateModel(
                    f"This file is already registered as version {duplicate.version} of "
                    f"{model.name}.",
                    details={"version": duplicate.version, "sha256": duplicate.sha256},
                )
            number = version or _next_version(model)
            if model.versions.filter(version=number).exists():
                raise VersionExists(f"{model.name} already has a version {number}.")
            if initial == Stage.PRODUCTION:
                _production_demote(model, actor=actor, replaced_by=number)

            created = ModelVersion(
                model=model,
                version=number,
                sha256=inspection.model.sha256,
                size_bytes=inspection.model.size_bytes,
                stage=initial,
                signature=inspection.signature,
                feature_names=inspection.feature_names,
                framework={**inspection.framework, "external_data": inspection.external_files},
                metrics=metrics or {},
                tags=tags or {},
                description=description,
                created_by=_actor(actor),
            )
            storage = version_storage()
            created.file.name = file_store(
                storage,
                model_version_upload_to(created, filename),
                inspection.model.path,
                saved,
            )
            folder = posixpath.dirname(created.file.name or "")
            for location in inspection.external_files:
                file_store(
                    storage,
                    posixpath.join(folder, location),
                    inspection.model.path.parent / location,
                    saved,
                )
            if prepared is not None:
                _reference_store(created, prepared, saved)
            created.save()

            _audit(
                model_name=model.name,
                version=number,
                action=AuditAction.UPLOAD,
                actor=actor,
                to_value=initial,
                details={
                    "sha256": created.sha256,
                    "size_bytes": created.size_bytes,
                    "filename": filename,
                },
            )
            if prepared is not None:
                _reference_audit(created, actor=actor, previous="", filename=reference_filename)
            if alias is not None:
                _alias_assign(model, alias, created, actor=actor)
            _publish_on_commit(model.name, ChangeReason.UPLOAD)
    logger.info("registered %s v%s (%s, %s)", model_name, number, initial, created.sha256[:12])
    return created


# --- stages -----------------------------------------------------------------------------------


def _stage_move(
    version: ModelVersion, target: Stage, *, actor: Actor, details: dict[str, Any] | None = None
) -> None:
    previous = version.stage
    version.stage = target
    version.stage_changed_at = timezone.now()
    version.save(update_fields=["stage", "stage_changed_at"])
    _audit(
        model_name=version.model.name,
        version=version.version,
        action=AuditAction.STAGE,
        actor=actor,
        from_value=previous,
        to_value=target,
        details=details,
    )
    if target == Stage.ARCHIVED:
        # Archived versions are never served, so they hold no alias.
        for held in list(version.aliases.all()):
            _alias_remove(held, actor=actor, reason="archived")


def _production_demote(model: RegisteredModel, *, actor: Actor, replaced_by: str) -> None:
    """Move the current production version out of the way (caller holds the model lock)."""
    current = ModelVersion.objects.filter(model=model, stage=Stage.PRODUCTION).first()
    if current is not None:
        current.model = model
        _stage_move(
            current,
            _previous_production_stage(),
            actor=actor,
            details={"replaced_by": replaced_by},
        )


def model_version_set_stage(
    *, version: ModelVersion, stage: str, actor: Actor = None
) -> ModelVersion:
    """Move ``version`` to ``stage`` under the rules of models_registry.stages.

    Promoting to production moves the previous production version to
    ``PHOENIX_PREVIOUS_PRODUCTION_STAGE`` in the same transaction; archiving drops the
    version's aliases. Returns the version, refreshed. Raises InvalidInput (unknown
    stage), StageConflict (same stage or a move that is not allowed),
    ModelVersionNotFound (deleted meanwhile).
    """
    target = _stage(stage)
    with transaction.atomic():
        current = _locked(version)
        model = current.model
        if current.stage == target:
            raise StageConflict(
                f"Version {current.version} of {model.name} is already in {target}.",
                details={"stage": current.stage},
            )
        if not is_move_allowed(current.stage, target):
            allowed = [s.value for s in allowed_targets(current.stage)]
            raise StageConflict(
                f"Version {current.version} of {model.name} cannot move from {current.stage} "
                f"to {target}; allowed: {', '.join(allowed)}.",
                details={"from": current.stage, "to": target, "allowed": allowed},
            )
        if target == Stage.PRODUCTION:
            _production_demote(model, actor=actor, replaced_by=current.version)
        _stage_move(current, target, actor=actor)
        _publish_on_commit(model.name, ChangeReason.STAGE)
    version.refresh_from_db()
    return version


# --- aliases ------------------------------------------------------------------------------------


def _alias_assign(
    model: RegisteredModel, alias: str, version: ModelVersion, *, actor: Actor
) -> ModelAlias:
    if version.stage == Stage.ARCHIVED:
        raise AliasConflict(
            f"Version {version.version} of {model.name} is archived and cannot be {alias}."
        )
    row = ModelAlias.objects.select_related("version").filter(model=model, alias=alias).first()
    if row is not None and row.version_id == version.pk:
        return row
    previous = row.version.version if row is not None else ""
    if row is None:
        row = ModelAlias.objects.create(model=model, alias=alias, version=version)
    else:
        row.version = version
        row.save(update_fields=["version", "updated_at"])
    _audit(
        model_name=model.name,
        version=version.version,
        action=AuditAction.ALIAS,
        actor=actor,
        from_value=previous,
        to_value=version.version,
        details={"alias": alias},
    )
    return row


def _alias_remove(row: ModelAlias, *, actor: Actor, reason: str = "") -> None:
    _audit(
        model_name=row.model.name,
        version=row.version.version,
        action=AuditAction.ALIAS,
        actor=actor,
        from_value=row.version.version,
        to_value="",
        details={"alias": row.alias, **({"reason": reason} if reason else {})},
    )
    row.delete()


def model_alias_set(
    *, model: RegisteredModel, alias: str, version: ModelVersion, actor: Actor = None
) -> ModelAlias:
    """Point ``alias`` (champion/challenger) of ``model`` at ``version``.

    Returns the ModelAlias. Raises InvalidInput (unknown alias, version of another
    model), AliasConflict (archived version), ModelVersionNotFound.
    """
    _alias(alias)
    if version.model_id != model.pk:
        raise InvalidInput(f"Version {version.version} does not belong to {model.name}.")
    with transaction.atomic():
        current = _locked(version)
        row = _alias_assign(current.model, alias, current, actor=actor)
        _publish_on_commit(current.model.name, ChangeReason.ALIAS)
    return row


def model_alias_delete(*, model: RegisteredModel, alias: str, actor: Actor = None) -> None:
    """Remove ``alias`` from ``model``. Raises InvalidInput, AliasNotFound."""
    _alias(alias)
    with transaction.atomic():
        RegisteredModel.objects.select_for_update().get(pk=model.pk)
        row = (
            ModelAlias.objects.select_related("model", "version")
            .filter(model=model, alias=alias)
            .first()
        )
        if row is None:
            raise AliasNotFound(f"{model.name} has no {alias}.")
        _alias_remove(row, actor=actor)
        _publish_on_commit(model.name, ChangeReason.ALIAS)


# --- reference data -------------------------------------------------------------------------------


def reference_data_attach(
    *, version: ModelVersion, file: IO[bytes] | Path, filename: str, actor: Actor = None
) -> ModelVersion:
    """Attach (or replace) the reference data set of ``version``.

    The table is checked against the version's feature names (count and names,
    numbers only) before it is stored. Returns the version, refreshed. Raises
    InvalidReferenceData, ModelTooLarge, ModelVersionNotFound.
    """
    with tempfile.TemporaryDirectory(prefix="phoenix-reference-") as tmp:
        prepared = _reference_prepare(
            file, filename, version.feature_names, Path(tmp), version.signature
        )
        with removed_unless_committed() as saved, transaction.atomic():
            current = _locked(version)
            old_name = current.reference_data.name or ""
            new_name = _reference_store(current, prepared, saved)
            current.save(update_fields=["reference_data", "reference_rows"])
            _reference_audit(current, actor=actor, previous=old_name, filename=filename)
            if old_name and old_name != new_name:
                files_delete_on_commit([old_name])
            _publish_on_commit(current.model.name, ChangeReason.REFERENCE)
    version.refresh_from_db()
    return version


# --- deletion ------------------------------------------------------------------------------------


def _version_delete(version: ModelVersion, *, actor: Actor) -> None:
    aliases = list(version.aliases.values_list("alias", flat=True))
    _audit(
        model_name=version.model.name,
        version=version.version,
        action=AuditAction.DELETE,
        actor=actor,
        from_value=version.stage,
        details={"sha256": version.sha256, "aliases": aliases},
    )
    files_delete_on_commit(
        [version.reference_data.name or ""], folders=[posixpath.dirname(version.file.name or "")]
    )
    version.delete()


def model_version_delete(*, version: ModelVersion, actor: Actor = None) -> None:
    """Delete ``version``, its aliases and (after commit) its files.

    Raises StageConflict for the production version (demote or archive it first),
    ModelVersionNotFound when it is already gone.
    """
    with transaction.atomic():
        current = _locked(version)
        model = current.model
        if current.stage == Stage.PRODUCTION:
            raise StageConflict(
                f"Version {current.version} of {model.name} is in production; archive it or "
                "promote another version before deleting it."
            )
        _version_delete(current, actor=actor)
        _publish_on_commit(model.name, ChangeReason.DELETE)


def registered_model_delete(*, model: RegisteredModel, actor: Actor = None) -> None:
    """Delete ``model`` with every version (production included), audited per version."""
    with transaction.atomic():
        locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        for version in locked.versions.all():
            version.model = locked
            _version_delete(version, actor=actor)
        _audit(model_name=locked.name, version="", action=AuditAction.DELETE, actor=actor)
        locked.delete()
        _publish_on_commit(model.name, ChangeReason.DELETE)

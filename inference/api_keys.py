"""API keys: minting, creating, revoking. Every change is broadcast after commit so each
serving process drops its cached keys (inference/auth.py authenticates them)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from models_registry.models import AuditAction, RegisteredModel
from models_registry.services import Actor, audit_event_record
from phoenix.change_bus import ChangeReason
from phoenix.exceptions import InvalidInput, NotFound

from .auth import key_hash
from .models import ApiKey
from .services import inference_config_changed

KEY_PREFIX = "phx_"


def api_key_mint(api_key: ApiKey) -> str:
    """Give an unsaved ``api_key`` a new secret; returns it in clear (shown once, never
    stored: the row keeps its prefix and SHA-256)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key.prefix, api_key.key_hash = key[:12], key_hash(key)
    return key


def api_key_create(
    *,
    name: str,
    model_names: Sequence[str] = (),
    all_models: bool = False,
    expires_at: datetime | None = None,
    can_label: bool = False,
    created_by: Any = None,
) -> tuple[ApiKey, str]:
    """Create a key scoped to ``model_names``, or to every model with ``all_models``
    (exactly one of the two), refused after ``expires_at`` when given; ``can_label``
    lets it give ground truth for any prediction of its models (else only its own).

    Returns (ApiKey, the key in clear). Raises NotFound for an unknown model name,
    InvalidInput for an empty name, a scope that is neither or both, or an expiry in
    the past.
    """
    name = name.strip()
    if not name:
        raise InvalidInput("An API key needs a name.", details={"name": "required"})
    wanted = sorted({m.strip() for m in model_names if m.strip()})
    if bool(wanted) == all_models:
        raise InvalidInput(
            "Scope the key explicitly: name its models, or make it an all-models key (not both).",
            details={"models": wanted, "all_models": all_models},
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput(
            "The key's expiry is in the past.", details={"expires_at": expires_at.isoformat()}
        )
    models = list(RegisteredModel.objects.filter(name__in=wanted))
    unknown = sorted(set(wanted) - {m.name for m in models})
    if unknown:
        raise NotFound(f"No model named {', '.join(unknown)}.", details={"models": unknown})
    api_key = ApiKey(
        name=name,
        all_models=all_models,
        expires_at=expires_at,
        can_label=can_label,
        created_by=created_by,
    )
    key = api_key_mint(api_key)
    with transaction.atomic():
        api_key.save()
        api_key.allowed_models.set(models)
        api_key_audit(api_key=api_key, change="created", actor=created_by)
        inference_config_changed(reason=ChangeReason.API_KEY)
    return api_key, key


def api_key_revoke(*, api_key: ApiKey, actor: Actor = None) -> ApiKey:
    """Revoke ``api_key`` now in every process (idempotent; audited when it changes
    something). Returns it."""
    if api_key.revoked_at is None:
        with transaction.atomic():
            api_key.revoked_at = timezone.now()
            api_key.save(update_fields=["revoked_at"])
            api_key_audit(api_key=api_key, change="revoked", actor=actor)
    inference_config_changed(reason=ChangeReason.API_KEY)
    return api_key


def api_key_audit(
    *, api_key: ApiKey, change: str, actor: Actor = None, fields: Sequence[str] = ()
) -> None:
    """Write a key's creation, change, revocation or deletion to the audit trail: its
    name and prefix (never the secret), scope, labelling right and expiry as they are
    now, and ``fields`` changed (admin edits)."""
    scope = (
        ["*"]
        if api_key.all_models
        else sorted(api_key.allowed_models.values_list("name", flat=True))
        if api_key.pk
        else []
    )
    audit_event_record(
        action=AuditAction.API_KEY,
        actor=actor,
        from_value=f"{api_key.name} ({api_key.prefix}...)",
        to_value=change,
        details={
            "key": api_key.prefix,
            "name": api_key.name,
            "models": scope,
            "can_label": api_key.can_label,
            "expires_at": api_key.expires_at.isoformat() if api_key.expires_at else None,
            "revoked_at": api_key.revoked_at.isoformat() if api_key.revoked_at else None,
            "fields": list(fields),
        },
    )


def api_key_find(identifier: str) -> ApiKey:
    """The key whose prefix (as shown when it was created, e.g. ``phx_AbCd1234``) or name
    is ``identifier``. Raises NotFound, or InvalidInput when a name is shared by several
    keys (use the prefix then)."""
    identifier = identifier.strip()
    by_prefix = list(ApiKey.objects.filter(prefix=identifier.removesuffix("...")))
    matches = by_prefix or list(ApiKey.objects.filter(name=identifier))
    if not matches:
        raise NotFound(f"No API key with prefix or name {identifier!r}.", details={})
    if len(matches) > 1:
        raise InvalidInput(
            f"{len(matches)} keys are named {identifier!r}; give the prefix of the one to use.",
            details={"prefixes": sorted(k.prefix for k in matches)},
        )
    return matches[0]

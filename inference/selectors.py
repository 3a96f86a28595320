"""Reads for the inference app. Called when caches are (re)built, never per warm request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from models_registry.models import Alias, ModelVersion, RegisteredModel
from models_registry.selectors import model_version_get, servable_versions
from models_registry.stages import Stage, champion_resolve

from . import routing
from .batching import BatchingPolicy
from .models import ApiKey, RoutingPolicy


@dataclass(frozen=True)
class ServedVersion:
    """What serving needs to know about one version, detached from the ORM."""

    model_name: str
    version: str
    sha256: str
    stage: str
    path: str
    aliases: tuple[str, ...]
    feature_names: tuple[str, ...]
    signature: dict[str, Any] = field(hash=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.model_name} v{self.version}"


@dataclass(frozen=True)
class ModelServing:
    """One model's serving plan: who answers, who may challenge, and how to split."""

    name: str
    champion: ServedVersion | None
    challenger: ServedVersion | None
    policy: routing.Policy
    versions: dict[str, ServedVersion] = field(hash=False, compare=False)
    # Micro-batching of concurrent requests to one version; None: each runs alone.
    batching: BatchingPolicy | None = None


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """An authenticated client. ``allowed_models`` None means every model (the key's
    ``all_models`` flag); an empty set means none (its models were all deleted)."""

    id: int
    name: str
    prefix: str
    allowed_models: frozenset[str] | None
    # Seconds since the epoch after which the key is refused; None: never.
    expires_at: float | None = None
    # May label any prediction of its models, not only its own (ApiKey.can_label).
    can_label: bool = False

    # DRF's IsAuthenticated and Django's request.user conventions.
    is_authenticated = True
    is_anonymous = False

    def may_use(self, model_name: str) -> bool:
        return self.allowed_models is None or model_name in self.allowed_models


def served_version_from(version: ModelVersion) -> ServedVersion:
    return ServedVersion(
        model_name=version.model.name,
        version=version.version,
        sha256=version.sha256,
        stage=version.stage,
        path=version.file.path,
        aliases=tuple(sorted(a.alias for a in version.aliases.all())),
        feature_names=tuple(version.feature_names or ()),
        signature=dict(version.signature or {}),
    )


def serving_plans_read() -> dict[str, ModelServing]:
    """Every model with a servable version, keyed by name (two queries)."""
    by_model: dict[str, list[ServedVersion]] = {}
    for version in servable_versions():
        served = served_version_from(version)
        by_model.setdefault(served.model_name, []).append(served)
    policies: dict[str, RoutingPolicy] = {
        p.model.name: p
        for p in RoutingPolicy.objects.select_related("model").filter(
            model__name__in=list(by_model)
        )
    }
    plans: dict[str, ModelServing] = {}
    for name, versions in by_model.items():
        champion = champion_resolve(versions, alias_holder=_holder(versions, Alias.CHAMPION))
        challenger = _holder(versions, Alias.CHALLENGER)
        if challenger is not None and champion is not None and challenger.sha256 == champion.sha256:
            challenger = None
        stored = policies.get(name)
        plans[name] = ModelServing(
            name=name,
            champion=champion,
            challenger=challenger,
            policy=_routing_policy(stored) if stored is not None else routing.Policy(),
            versions={v.version: v for v in versions},
            batching=_batching_policy(stored) if stored is not None else None,
        )
    return plans


def _routing_policy(stored: RoutingPolicy) -> routing.Policy:
    return routing.Policy(
        strategy=routing.Strategy(stored.strategy),
        challenger_percent=float(stored.challenger_percent),
        seed=stored.seed,
    )


def _batching_policy(stored: RoutingPolicy) -> BatchingPolicy | None:
    if not stored.micro_batching:
        return None
    return BatchingPolicy(
        max_rows=stored.micro_batch_max_rows,
        max_delay_ms=float(stored.micro_batch_max_delay_ms),
    )


def _holder(versions: list[ServedVersion], alias: str) -> ServedVersion | None:
    return next((v for v in versions if alias in v.aliases), None)


def served_version_get(
    *, model_name: str, version: str, allow_archived: bool = False
) -> ServedVersion:
    """A version pinned by a client. Raises ModelNotFound/ModelVersionNotFound (404),
    also for an archived version unless ``allow_archived``."""
    from models_registry.exceptions import ModelVersionNotFound

    found = model_version_get(model_name=model_name, version=version)
    if found.stage == Stage.ARCHIVED and not allow_archived:
        raise ModelVersionNotFound(
            f"Version {version!r} of {model_name} is archived and not served."
        )
    return served_version_from(found)


def registered_model_exists(*, name: str) -> bool:
    return RegisteredModel.objects.filter(name=name).exists()


def api_key_principal_get(*, key_hash: str) -> ApiKeyPrincipal | None:
    """The key with this hash, not revoked (expired ones included: the caller says why
    it refuses them), or None."""
    return _principal(ApiKey.objects.filter(key_hash=key_hash))


def api_key_principal_by_id(*, key_id: int) -> ApiKeyPrincipal | None:
    """The key with this id as ``api_key_principal_get`` reads it (not revoked), or None."""
    return _principal(ApiKey.objects.filter(pk=key_id))


def _principal(keys: QuerySet[ApiKey]) -> ApiKeyPrincipal | None:
    api_key = keys.filter(revoked_at__isnull=True).prefetch_related("allowed_models").first()
    if api_key is None:
        return None
    names = None if api_key.all_models else frozenset(m.name for m in api_key.allowed_models.all())
    return ApiKeyPrincipal(
        id=api_key.pk,
        name=api_key.name,
        prefix=api_key.prefix,
        allowed_models=names,
        expires_at=api_key.expires_at.timestamp() if api_key.expires_at is not None else None,
        can_label=api_key.can_label,
    )


def routing_policy_get(*, model: RegisteredModel) -> RoutingPolicy | None:
    """The model's stored routing policy, or None (it is served by its champion alone)."""
    return RoutingPolicy.objects.filter(model=model).first()

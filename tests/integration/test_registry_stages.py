"""Stage and alias rules, audit rows, the after-commit broadcast, concurrent promotions."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from models_registry import selectors, services
from models_registry.exceptions import AliasConflict, StageConflict
from models_registry.models import AuditAction, AuditEvent, ModelAlias, ModelVersion
from phoenix import change_bus
from phoenix.change_bus import Change
from tests.registry_support import variant_bytes

pytestmark = pytest.mark.usefixtures("media")


@pytest.fixture
def changes() -> Iterator[list[Change]]:
    heard: list[Change] = []
    change_bus.subscribe(heard.append)
    yield heard
    change_bus.unsubscribe(heard.append)


def _register(model_file: Path, n: int, **kwargs: object) -> ModelVersion:
    return services.model_version_register(
        model_name="risk", file=io.BytesIO(variant_bytes(model_file, f"variant {n}")), **kwargs
    )


def _stages() -> dict[str, str]:
    return dict(ModelVersion.objects.values_list("version", "stage"))


@pytest.mark.django_db
def test_promote_archives_previous_production(tiny_onnx_model) -> None:
    v1 = _register(tiny_onnx_model, 1, stage="production")
    v2 = _register(tiny_onnx_model, 2, stage="staging")

    services.model_version_set_stage(version=v2, stage="production")

    assert _stages() == {"1": "archived", "2": "production"}
    moves = AuditEvent.objects.filter(action=AuditAction.STAGE).order_by("id")
    assert [(e.version, e.from_value, e.to_value) for e in moves] == [
        ("1", "production", "archived"),
        ("2", "staging", "production"),
    ]
    assert moves[0].details == {"replaced_by": "2"}
    v1.refresh_from_db()
    assert v1.stage == "archived"


@pytest.mark.django_db
def test_previous_production_can_be_demoted_to_staging(settings, tiny_onnx_model) -> None:
    settings.PHOENIX_PREVIOUS_PRODUCTION_STAGE = "staging"
    _register(tiny_onnx_model, 1, stage="production")

    _register(tiny_onnx_model, 2, stage="production")

    assert _stages() == {"1": "staging", "2": "production"}


@pytest.mark.django_db
def test_registering_in_production_demotes_like_a_move(tiny_onnx_model) -> None:
    _register(tiny_onnx_model, 1, stage="production", alias="champion")

    _register(tiny_onnx_model, 2, stage="production")

    assert _stages() == {"1": "archived", "2": "production"}
    # The archived version lost its alias, and the removal is audited.
    assert not ModelAlias.objects.exists()
    removal = AuditEvent.objects.get(action=AuditAction.ALIAS, to_value="")
    assert removal.details == {"alias": "champion", "reason": "archived"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("start", "target"),
    [("dev", "production"), ("dev", "dev"), ("production", "production"), ("archived", "dev")],
)
def test_illegal_moves_are_conflicts_and_change_nothing(
    tiny_onnx_model, changes, start: str, target: str
) -> None:
    version = _register(tiny_onnx_model, 1, stage="dev")
    if start == "production":
        services.model_version_set_stage(version=version, stage="staging")
        services.model_version_set_stage(version=version, stage="production")
    elif start == "archived":
        services.model_version_set_stage(version=version, stage="archived")
    audit_rows = AuditEvent.objects.count()

    with pytest.raises(StageConflict):
        services.model_version_set_stage(version=version, stage=target)

    version.refresh_from_db()
    assert version.stage == start
    assert AuditEvent.objects.count() == audit_rows


@pytest.mark.django_db
def test_unknown_stage_is_invalid_input(tiny_onnx_model) -> None:
    from phoenix.exceptions import InvalidInput

    version = _register(tiny_onnx_model, 1)

    with pytest.raises(InvalidInput, match="Unknown stage"):
        services.model_version_set_stage(version=version, stage="live")


@pytest.mark.django_db
def test_alias_moves_to_the_new_holder_and_is_audited(django_user_model, tiny_onnx_model) -> None:
    person = django_user_model.objects.create_user(username="ana", password="pw-ana-12345")
    v1 = _register(tiny_onnx_model, 1, stage="staging")
    v2 = _register(tiny_onnx_model, 2, stage="staging")

    services.model_alias_set(model=v1.model, alias="challenger", version=v1, actor=person)
    services.model_alias_set(model=v1.model, alias="challenger", version=v2, actor=person)

    assert selectors.model_aliases(model=v1.model) == {"challenger": v2}
    moves = AuditEvent.objects.filter(action=AuditAction.ALIAS).order_by("id")
    assert [(e.from_value, e.to_value, e.actor_name) for e in moves] == [
        ("", "1", "ana"),
        ("1", "2", "ana"),
    ]


@pytest.mark.django_db
def test_archived_versions_cannot_hold_aliases(tiny_onnx_model) -> None:
    version = _register(tiny_onnx_model, 1)
    services.model_version_set_stage(version=version, stage="archived")

    with pytest.raises(AliasConflict, match="archived"):
        services.model_alias_set(model=version.model, alias="champion", version=version)


@pytest.mark.django_db
def test_alias_delete_is_audited(tiny_onnx_model) -> None:
    version = _register(tiny_onnx_model, 1, alias="challenger")

    services.model_alias_delete(model=version.model, alias="challenger")

    assert not ModelAlias.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.ALIAS, to_value="").count() == 1


@pytest.mark.django_db
def test_servable_versions_are_production_and_alias_holders_never_archived(
    tiny_onnx_model,
) -> None:
    prod = _register(tiny_onnx_model, 1, stage="production", alias="champion")
    challenger = _register(tiny_onnx_model, 2, stage="staging", alias="challenger")
    _register(tiny_onnx_model, 3, stage="staging")
    other = services.model_version_register(
        model_name="other", file=tiny_onnx_model, stage="production"
    )

    servable = selectors.servable_versions()

    assert {(v.model.name, v.version) for v in servable} == {
        ("risk", prod.version),
        ("risk", challenger.version),
        ("other", other.version),
    }
    services.model_version_set_stage(version=challenger, stage="archived")
    assert ("risk", "2") not in {(v.model.name, v.version) for v in selectors.servable_versions()}


@pytest.mark.django_db
def test_production_version_cannot_be_deleted(tiny_onnx_model) -> None:
    version = _register(tiny_onnx_model, 1, stage="production")

    with pytest.raises(StageConflict):
        services.model_version_delete(version=version)


@pytest.mark.django_db
def test_delete_is_audited_and_removes_files_after_commit(
    tiny_onnx_model, media, django_capture_on_commit_callbacks
) -> None:
    version = _register(tiny_onnx_model, 1, alias="champion")
    stored = media / version.file.name

    with django_capture_on_commit_callbacks(execute=True):
        services.model_version_delete(version=version)

    assert not stored.exists()
    event = AuditEvent.objects.get(action=AuditAction.DELETE)
    assert (event.version, event.from_value, event.details["aliases"]) == ("1", "dev", ["champion"])


@pytest.mark.django_db
def test_changes_are_published_only_after_commit(
    tiny_onnx_model, changes, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as pending:
        version = _register(tiny_onnx_model, 1, stage="staging")
        services.model_version_set_stage(version=version, stage="production")
        assert changes == []

    for callback in pending:
        callback()
    assert [(c.model_name, c.reason) for c in changes] == [("risk", "upload"), ("risk", "stage")]
    assert {c.origin for c in changes} == {change_bus.origin()}


@pytest.mark.django_db
def test_refused_move_publishes_nothing(
    tiny_onnx_model, changes, django_capture_on_commit_callbacks
) -> None:
    version = _register(tiny_onnx_model, 1)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(StageConflict):
        services.model_version_set_stage(version=version, stage="production")

    assert changes == []


# --- PostgreSQL: two promotions at once -----------------------------------------------


def _in_thread(results: dict[str, object], key: str, start: threading.Barrier, run) -> None:
    try:
        start.wait()
        results[key] = run()
    except Exception as exc:
        results[key] = exc
    finally:
        connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_serialize_on_postgres(
    postgres_db, tiny_onnx_model, monkeypatch
) -> None:
    _register(tiny_onnx_model, 1, stage="production", alias="champion")
    v2 = _register(tiny_onnx_model, 2, stage="staging")
    v3 = _register(tiny_onnx_model, 3, stage="staging")

    # Hold the model lock a while after demoting, so the other promotion must wait on it.
    demote = services._production_demote

    def slow_demote(*args: object, **kwargs: object) -> None:
        demote(*args, **kwargs)  # type: ignore[arg-type]
        time.sleep(0.3)

    monkeypatch.setattr(services, "_production_demote", slow_demote)
    start = threading.Barrier(2)
    results: dict[str, object] = {}
    threads = [
        threading.Thread(
            target=_in_thread,
            args=(
                results,
                v.version,
                start,
                lambda v=v: services.model_version_set_stage(version=v, stage="production"),
            ),
        )
        for v in (v2, v3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert all(isinstance(r, ModelVersion) for r in results.values()), results
    stages = _stages()
    assert sorted(stages.values()) == ["archived", "archived", "production"]
    winner = next(v for v, s in stages.items() if s == "production")
    # Whoever went second demoted whoever went first: every move is in the audit log.
    moves = list(AuditEvent.objects.filter(action=AuditAction.STAGE).order_by("id"))
    assert [(m.from_value, m.to_value) for m in moves] == [
        ("production", "archived"),
        ("staging", "production"),
        ("production", "archived"),
        ("staging", "production"),
    ]
    assert moves[-1].version == winner
    assert not ModelAlias.objects.exists()  # v1's champion went with its archiving


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_same_version_promoted_twice_at_once_wins_once_on_postgres(
    postgres_db, tiny_onnx_model
) -> None:
    _register(tiny_onnx_model, 1, stage="production")
    v2 = _register(tiny_onnx_model, 2, stage="staging")
    start = threading.Barrier(2)
    results: dict[str, object] = {}
    threads = [
        threading.Thread(
            target=_in_thread,
            args=(
                results,
                key,
                start,
                lambda: services.model_version_set_stage(
                    version=ModelVersion.objects.get(pk=v2.pk), stage="production"
                ),
            ),
        )
        for key in ("a", "b")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    outcomes = sorted(type(r).__name__ for r in results.values())
    assert outcomes == ["ModelVersion", "StageConflict"], results
    assert _stages() == {"1": "archived", "2": "production"}
    assert AuditEvent.objects.filter(action=AuditAction.STAGE).count() == 2

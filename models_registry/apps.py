from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    name = "models_registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        # Sign-ins go through Django's auth views (dashboards and admin alike); their
        # signal is the one place every successful sign-in passes.
        user_logged_in.connect(_sign_in_audit, dispatch_uid="models_registry.sign_in_audit")


def _sign_in_audit(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    from .services import audit_sign_in

    meta = getattr(request, "META", {}) if request is not None else {}
    audit_sign_in(
        user=user,
        address=str(meta.get("REMOTE_ADDR", "")),
        via=str(getattr(request, "path", "")),
    )

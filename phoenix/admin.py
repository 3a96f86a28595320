"""Admin pieces every app shares."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rows written only by an app's services: anyone with access may look, nobody edits.

    ``rows_deletable``: whether users holding the delete permission may still delete
    rows (monitoring's logs and reports, for clean-up); the registry's audit trail and
    aliases are never deleted by hand.
    """

    rows_deletable = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.rows_deletable and super().has_delete_permission(request, obj)

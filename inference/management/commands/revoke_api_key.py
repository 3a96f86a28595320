"""Revoke an API key by its prefix or name; every serving process stops accepting it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from phoenix.exceptions import ApplicationError

from ...api_keys import api_key_find, api_key_revoke


class Command(BaseCommand):
    help = (
        "Revoke an API key, given the prefix create_api_key printed (phx_...) or its name. "
        "Takes effect in every running process at once (the key caches are cleared through "
        "the change broadcast); revoking a revoked key changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="the key's prefix (e.g. phx_AbCd1234) or name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            api_key = api_key_find(options["key"])
        except ApplicationError as error:
            raise CommandError(error.message) from error
        already = api_key.revoked_at is not None
        api_key_revoke(api_key=api_key)
        state = "was already revoked" if already else "is revoked"
        self.stdout.write(f"API key {api_key.name!r} ({api_key.prefix}...) {state}.")

"""Create an API key; the key is printed once, alone on the last line."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from phoenix.exceptions import ApplicationError

from ...api_keys import api_key_create


class Command(BaseCommand):
    help = "Create an API key for the predict endpoints (printed once; only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who or what the key is for")
        parser.add_argument(
            "--models", default="", help="comma-separated model names (default: every model)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        models = [m for m in options["models"].split(",") if m.strip()]
        try:
            api_key, key = api_key_create(name=options["name"], model_names=models)
        except ApplicationError as error:
            raise CommandError(error.message) from error
        scope = ", ".join(sorted(models)) if models else "every model"
        self.stdout.write(
            f"Created API key {api_key.name!r} ({api_key.prefix}...) for {scope}. "
            "It is shown once, below; store it now."
        )
        self.stdout.write(key)

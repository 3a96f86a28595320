"""Create an API key; the key is printed once, alone on the last line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from phoenix.exceptions import ApplicationError

from ...api_keys import api_key_create


class Command(BaseCommand):
    help = (
        "Create an API key for the predict endpoints (printed once; only its hash is stored). "
        "Its scope is explicit: --model NAME (repeatable, or comma-separated) or --all-models."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who or what the key is for")
        parser.add_argument(
            "--model",
            "--models",
            dest="models",
            action="append",
            default=[],
            metavar="NAME",
            help="a model the key may use (repeat, or comma-separate, for several)",
        )
        parser.add_argument(
            "--all-models",
            action="store_true",
            help="the key may use every model, including models registered later",
        )
        parser.add_argument(
            "--can-label",
            action="store_true",
            help="the key may give feedback (ground truth) for any prediction of its models; "
            "without it, only for the predictions it made itself",
        )
        parser.add_argument(
            "--expires",
            metavar="WHEN",
            help="refuse the key after this ISO 8601 time (e.g. 2027-06-30T00:00:00Z; "
            "UTC when no offset is given); default: never",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        models = sorted({m.strip() for item in options["models"] for m in item.split(",")} - {""})
        if bool(models) == options["all_models"]:
            raise CommandError(
                "Give the key's scope: --model NAME (repeatable) or --all-models (not both)."
            )
        expires_at = _expiry(options["expires"]) if options["expires"] else None
        try:
            api_key, key = api_key_create(
                name=options["name"],
                model_names=models,
                all_models=options["all_models"],
                expires_at=expires_at,
                can_label=options["can_label"],
            )
        except ApplicationError as error:
            raise CommandError(error.message) from error
        scope = ", ".join(models) if models else "every model"
        until = f", expiring {expires_at.isoformat()}" if expires_at else ""
        labels = ", may label" if api_key.can_label else ""
        self.stdout.write(
            f"Created API key {api_key.name!r} ({api_key.prefix}...) for {scope}{until}{labels}. "
            "It is shown once, below; store it now."
        )
        self.stdout.write(key)


def _expiry(text: str) -> datetime:
    try:
        parsed = parse_datetime(text.strip())
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"--expires {text!r} is not an ISO 8601 date and time.")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

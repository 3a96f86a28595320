"""Delete prediction-log rows older than a retention period, in bounded batches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from phoenix.exceptions import ApplicationError

from ...services.retention import duration_parse, predictions_count, predictions_purge


class Command(BaseCommand):
    help = (
        "Delete logged predictions created more than --older-than ago (e.g. 30d, 12h), for "
        "one --model or all, --batch-size rows per transaction so writers are never blocked "
        "for long. --dry-run counts without deleting."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="e.g. 30d, 12h, 90m, 2w")
        parser.add_argument("--model", default=None, help="only this model's rows")
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.utils import timezone

        try:
            older_than = duration_parse(options["older_than"])
            if options["dry_run"]:
                count = predictions_count(
                    model_name=options["model"], until=timezone.now() - older_than
                )
                self.stdout.write(f"{count} row(s) would be deleted.")
                return
            result = predictions_purge(
                older_than=older_than,
                model_name=options["model"],
                batch_size=options["batch_size"],
            )
        except ApplicationError as error:
            raise CommandError(error.message) from error
        self.stdout.write(
            f"Deleted {result.deleted} row(s) created before {result.cutoff.isoformat()} "
            f"in {result.batches} batch(es)."
        )

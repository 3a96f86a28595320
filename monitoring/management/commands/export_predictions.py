"""Stream logged predictions to CSV or Parquet, for audits and retraining."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from phoenix.exceptions import ApplicationError

from ...services.retention import EXPORT_FORMATS, duration_parse, predictions_export


def _moment(text: str | None) -> datetime | None:
    """An ISO timestamp (naive: UTC) or a duration back from now (7d)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return timezone.now() - duration_parse(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Write logged predictions (features, prediction, probabilities, ground truth) oldest "
        "first, streamed in chunks: --format csv (to stdout or --output) or parquet (--output "
        "required). --since/--until take an ISO time or a duration back from now (7d)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default=None, help="only this model's rows")
        parser.add_argument("--since", default=None, help="ISO time or duration ago, e.g. 7d")
        parser.add_argument("--until", default=None, help="ISO time or duration ago")
        parser.add_argument("--format", dest="export_format", choices=EXPORT_FORMATS, default="csv")
        parser.add_argument("--output", default="-", help="file path; - for stdout (csv only)")

    def handle(self, *args: Any, **options: Any) -> None:
        export_format, output = options["export_format"], options["output"]
        if export_format == "parquet" and output == "-":
            raise CommandError("parquet needs --output FILE")
        try:
            since, until = _moment(options["since"]), _moment(options["until"])
            selection: dict[str, Any] = {
                "model_name": options["model"],
                "since": since,
                "until": until,
            }
            if output == "-":
                written = predictions_export(sys.stdout, export_format=export_format, **selection)
            else:
                mode, encoding = ("w", "utf-8") if export_format == "csv" else ("wb", None)
                with Path(output).open(
                    mode, encoding=encoding, newline="" if encoding else None
                ) as out:
                    written = predictions_export(out, export_format=export_format, **selection)
        except ApplicationError as error:
            raise CommandError(error.message) from error
        self.stderr.write(f"exported {written} row(s)")

"""Load entity features into the online feature store from a CSV.

The demo app (``phoenix.demo``) extends this command with ``--demo``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from phoenix.exceptions import ApplicationError

from ...feature_store import feature_store
from ...services import online_features_write

BATCH = 1000


class Command(BaseCommand):
    help = (
        "Write features to the online store: a CSV with an entity_id column and one column "
        "per feature."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", nargs="?", help="CSV file with an entity_id column")

    def rows_given(self, options: dict[str, Any]) -> dict[str, dict[str, float]] | None:
        """Rows given otherwise than by a CSV: none here (the demo's command adds --demo)."""
        if not options["csv"]:
            raise CommandError("Give a CSV file.")
        return None

    def handle(self, *args: Any, **options: Any) -> None:
        rows = self.rows_given(options)
        written = 0
        try:
            if rows is not None:
                written = self._write(rows)
            else:
                written = self._write_csv(Path(options["csv"]))
        except ApplicationError as error:
            raise CommandError(error.message) from error
        self.stdout.write(
            f"Wrote features of {written} entities to the {feature_store().backend} store."
        )

    def _write(self, rows: dict[str, dict[str, float]]) -> int:
        items = list(rows.items())
        for start in range(0, len(items), BATCH):
            online_features_write(rows=dict(items[start : start + BATCH]))
        return len(items)

    def _write_csv(self, path: Path) -> int:
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        written = 0
        batch: dict[str, dict[str, float]] = {}
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "entity_id" not in reader.fieldnames:
                raise CommandError("The CSV needs an entity_id column.")
            for line, record in enumerate(reader, start=2):
                entity = (record.pop("entity_id") or "").strip()
                if not entity:
                    raise CommandError(f"Line {line}: empty entity_id.")
                values: dict[str, float] = {}
                for name, raw in record.items():
                    if raw is None or raw.strip() == "":
                        continue  # absent: NOT_FOUND at read time
                    try:
                        value = float(raw)
                    except ValueError:
                        raise CommandError(
                            f"Line {line}: {name}={raw!r} is not a number."
                        ) from None
                    if not math.isfinite(value):
                        raise CommandError(f"Line {line}: {name}={raw!r} is not finite.")
                    values[name] = value
                batch[entity] = values
                if len(batch) >= BATCH:
                    written += self._write(batch)
                    batch = {}
        return written + (self._write(batch) if batch else 0)

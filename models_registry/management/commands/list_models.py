"""manage.py list_models: every version of every model, as a table."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from models_registry.selectors import model_versions_list

COLUMNS = ("MODEL", "VERSION", "STAGE", "ALIASES", "SHA256", "SIZE", "CREATED")


class Command(BaseCommand):
    help = "List registered models and their versions (stage, aliases, sha256, size)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", help="only this model")
        parser.add_argument("--stage", help="only versions in this stage")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = [
            (
                v.model.name,
                v.version,
                v.stage,
                ",".join(sorted(a.alias for a in v.aliases.all())) or "-",
                v.sha256[:12],
                str(v.size_bytes),
                f"{v.created_at:%Y-%m-%d %H:%M}",
            )
            for v in model_versions_list(model_name=options["name"], stage=options["stage"])
        ]
        if not rows:
            self.stdout.write("No models registered.")
            return
        widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
        for row in [COLUMNS, *rows]:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )

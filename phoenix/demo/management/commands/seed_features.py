"""``seed_features`` with ``--demo``: the inference command, plus the demo customers.

Listed before ``inference`` in INSTALLED_APPS, the demo app's command of the same name
is the one ``manage.py seed_features`` runs; without the demo app, the CSV-only one.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from inference.management.commands.seed_features import Command as SeedFeaturesCommand
from phoenix.demo.credit_risk import generate_customers


class Command(SeedFeaturesCommand):
    help = (
        "Write features to the online store: a CSV with an entity_id column and one column "
        "per feature, or --demo for the demo credit-risk customers cust_0..cust_N."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--demo", action="store_true", help="seed demo customers")
        parser.add_argument("--rows", type=int, default=1000, help="demo customers (default 1000)")
        parser.add_argument("--seed", type=int, default=42, help="demo data seed")

    def rows_given(self, options: dict[str, Any]) -> dict[str, dict[str, float]] | None:
        if bool(options["csv"]) == bool(options["demo"]):
            raise CommandError("Give a CSV file or --demo (one of the two).")
        if not options["demo"]:
            return None
        x, _y, names = generate_customers(n=options["rows"], seed=options["seed"])
        return {
            f"cust_{i}": {name: float(value) for name, value in zip(names, row, strict=True)}
            for i, row in enumerate(x.tolist())
        }

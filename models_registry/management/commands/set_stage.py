"""manage.py set_stage NAME VERSION STAGE"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.selectors import model_version_get
from models_registry.services import model_version_set_stage
from models_registry.stages import Stage
from phoenix.exceptions import ApplicationError


class Command(BaseCommand):
    help = (
        "Move a model version to another stage. Promoting to production moves the previous "
        "production version out (PHOENIX_PREVIOUS_PRODUCTION_STAGE)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("model_version", metavar="version")
        parser.add_argument("stage", choices=[s.value for s in Stage])

    def handle(self, *args: Any, name: str, model_version: str, stage: str, **options: Any) -> None:
        try:
            version = model_version_get(model_name=name, version=model_version)
            previous = version.stage
            model_version_set_stage(version=version, stage=stage)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"{name} v{model_version}: {previous} -> {version.stage}")

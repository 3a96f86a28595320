"""manage.py set_alias NAME ALIAS VERSION"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.models import Alias
from models_registry.selectors import model_version_get
from models_registry.services import model_alias_set
from phoenix.exceptions import ApplicationError


class Command(BaseCommand):
    help = "Point a model's champion or challenger alias at one of its versions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("alias", choices=Alias.values)
        parser.add_argument("model_version", metavar="version")

    def handle(self, *args: Any, name: str, alias: str, model_version: str, **options: Any) -> None:
        try:
            version = model_version_get(model_name=name, version=model_version)
            model_alias_set(model=version.model, alias=alias, version=version)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"{name}@{alias} -> v{model_version}")

"""manage.py register_model FILE --name N [--version V] [--stage S] [--reference F] [--alias A]"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.models import Alias
from models_registry.services import INITIAL_STAGES, model_version_register
from phoenix.exceptions import ApplicationError


class Command(BaseCommand):
    help = (
        "Validate an ONNX file (loaded by onnxruntime before anything is stored) and register "
        "it as a new version of a model."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # Our --version (the model version) replaces Django's --version (its own).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="the .onnx file")
        parser.add_argument("--name", required=True, help="model name (created if new)")
        parser.add_argument("--version", dest="model_version", help="default: the next number")
        parser.add_argument("--stage", default="dev", choices=[s.value for s in INITIAL_STAGES])
        parser.add_argument("--reference", type=Path, help="reference data: .csv or .npy")
        parser.add_argument("--alias", choices=Alias.values)
        parser.add_argument("--description", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        reference: Path | None = options["reference"]
        for given in (path, reference):
            if given is not None and not given.is_file():
                raise CommandError(f"No such file: {given}")
        try:
            version = model_version_register(
                model_name=options["name"],
                file=path,
                filename=path.name,
                version=options["model_version"],
                stage=options["stage"],
                alias=options["alias"],
                reference=reference,
                reference_filename=reference.name if reference else None,
                description=options["description"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        aliases = f", {options['alias']}" if options["alias"] else ""
        self.stdout.write(
            f"Registered {version.model.name} v{version.version} ({version.stage}{aliases}), "
            f"sha256 {version.sha256[:12]}, inputs "
            + ", ".join(
                f"{i['name']}:{i['dtype']}{i['shape']}" for i in version.signature["inputs"]
            )
        )

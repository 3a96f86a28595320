"""Everything `make run` does before it starts the servers. Safe to run again."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Prepare a fresh install: apply migrations, collect static files, train and "
        "register the demo models, fill the feature store with the demo customers and "
        "create the admin user "
        "(DJANGO_SUPERUSER_USERNAME/PASSWORD/EMAIL, or 'admin' with a password printed "
        "once). Idempotent: a second run changes nothing that exists."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--skip-demo", action="store_true", help="no demo models or features")

    def handle(self, *args: Any, skip_demo: bool, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        # WhiteNoise serves STATIC_ROOT; collected once here rather than found per request.
        call_command("collectstatic", interactive=False, verbosity=0)
        if not skip_demo:
            call_command("train_demo_models", stdout=self.stdout)
            if "seed_features" in get_commands():
                call_command("seed_features", demo=True, stdout=self.stdout)
        self._ensure_superuser()

    def _ensure_superuser(self) -> None:
        User = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin user '{username}' exists.")
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "admin@localhost")
        User.objects.create_superuser(username=username, email=email, password=password)
        if "DJANGO_SUPERUSER_PASSWORD" in os.environ:
            self.stdout.write(f"Admin user '{username}' created with DJANGO_SUPERUSER_PASSWORD.")
        else:
            # Shown once: only its hash is stored.
            self.stdout.write(
                self.style.WARNING(f"Admin user '{username}' created. Password: {password}")
            )

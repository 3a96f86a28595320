"""Queue a Celery task by its name once the caller's transaction commits.

Services enqueue through this module instead of importing the app's ``tasks.py``:
tasks import services, so a service importing its tasks would be an import cycle.
The task is looked up by the name its ``@shared_task(name=...)`` declares.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.db import transaction


def task_enqueue(name: str, *args: Any, **kwargs: Any) -> None:
    """Queue ``name`` now (``CELERY_TASK_ALWAYS_EAGER`` runs it in this process)."""
    app = current_app
    if name not in app.tasks:
        # Importing the apps' task modules (autodiscovery) registers every task by name.
        app.loader.import_default_modules()
    app.tasks[name].apply_async(args=args, kwargs=kwargs)


def task_enqueue_on_commit(name: str, *args: Any, **kwargs: Any) -> None:
    """Queue ``name`` after the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: task_enqueue(name, *args, **kwargs))

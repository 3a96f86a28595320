"""Experiments are evaluated every 30 seconds, editable in admin (Periodic tasks).

Created once; an operator's later edits are left alone (created only when missing).
"""

from django.db import migrations

TASK_NAME = "Experiments: evaluate every running experiment"
TASK = "monitoring.tasks.evaluate_experiments"
EVERY_SECONDS = 30
EXPIRE_SECONDS = 25


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    interval, _ = IntervalSchedule.objects.get_or_create(every=EVERY_SECONDS, period="seconds")
    _, created = PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": TASK,
            "interval": interval,
            "expire_seconds": EXPIRE_SECONDS,
            "description": "Runs each running experiment's sequential test and guards; rolls "
            "back, advances the canary or promotes.",
            "enabled": True,
        },
    )
    if created:
        from django.utils import timezone

        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME, task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0006_experiment"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

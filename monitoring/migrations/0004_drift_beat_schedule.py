"""The default drift-check schedule: every five minutes, editable in admin (Periodic tasks).

Created once; an operator's later edits (interval, enabled) are left alone because the
entry is only created when missing.
"""

from django.db import migrations

TASK_NAME = "Drift check (every production model version)"
TASK = "monitoring.tasks.check_drift"
EVERY_MINUTES = 5
# A tick still queued after this long is dropped; the next one replaces it.
EXPIRE_SECONDS = 4 * 60


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    interval, _ = IntervalSchedule.objects.get_or_create(every=EVERY_MINUTES, period="minutes")
    _, created = PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": TASK,
            "interval": interval,
            "expire_seconds": EXPIRE_SECONDS,
            "description": "Tests recent traffic of each production version against its "
            "reference data; alerts and retrains on drift.",
            "enabled": True,
        },
    )
    if created:
        # Tell a running beat (DatabaseScheduler) that the schedule changed.
        from django.utils import timezone

        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME, task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0003_operators_group"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

"""The daily prediction-log purge, editable in admin (Periodic tasks).

It deletes only past PHOENIX_PREDICTION_RETENTION, which is unset by default (the task
then deletes nothing). Created once; an operator's later edits are left alone.
"""

from django.db import migrations

TASK_NAME = "Prediction log retention (PHOENIX_PREDICTION_RETENTION)"
TASK = "monitoring.tasks.purge_predictions"


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    daily, _ = CrontabSchedule.objects.get_or_create(
        minute="17", hour="3", day_of_week="*", day_of_month="*", month_of_year="*"
    )
    _, created = PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": TASK,
            "crontab": daily,
            "description": "Deletes prediction rows older than PHOENIX_PREDICTION_RETENTION "
            "(unset: none), in bounded batches.",
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
        ("monitoring", "0007_experiment_beat_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

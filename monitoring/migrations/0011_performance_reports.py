"""Performance reports from ground truth, the "performance" alert kind, and the check's
beat schedule: every five minutes, editable in admin (Periodic tasks).

The schedule entry is created once; an operator's later edits (interval, enabled) are
left alone because it is only created when missing.
"""

import django.db.models.deletion
from django.db import migrations, models

TASK_NAME = "Performance check (every served model version, from labels)"
TASK = "monitoring.tasks.check_performance"
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
            "description": "Measures each served version on its labelled predictions against "
            "its holdout metrics; alerts and retrains on a drop.",
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
        ('models_registry', '0003_audit_action_experiment'),
        ('monitoring', '0010_driftreport_predictions'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        migrations.AlterField(
            model_name='alert',
            name='kind',
            field=models.CharField(choices=[('drift', 'Drift'), ('retraining', 'Retraining'), ('rollback', 'Rollback'), ('performance', 'Performance')], max_length=16),
        ),
        migrations.CreateModel(
            name='PerformanceReport',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('task', models.CharField(max_length=16)),
                ('window_start', models.DateTimeField()),
                ('window_end', models.DateTimeField()),
                ('rows', models.PositiveIntegerField()),
                ('labelled', models.PositiveIntegerField()),
                ('labelled_share', models.FloatField(blank=True, null=True)),
                ('label_delay_p50_s', models.FloatField(blank=True, null=True)),
                ('label_delay_p95_s', models.FloatField(blank=True, null=True)),
                ('status', models.CharField(choices=[('ok', 'Within bounds'), ('degraded', 'Degraded'), ('insufficient_data', 'Too few labels')], max_length=32)),
                ('metrics', models.JSONField(blank=True, default=dict)),
                ('holdout', models.JSONField(blank=True, default=dict)),
                ('comparisons', models.JSONField(blank=True, default=list)),
                ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('model_version', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='performance_reports', to='models_registry.modelversion')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['model_version', '-window_end'], name='perfreport_version_end')],
            },
        ),
        migrations.RunPython(create_schedule, delete_schedule),
    ]

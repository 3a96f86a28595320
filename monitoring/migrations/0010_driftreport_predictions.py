"""Prediction drift on the drift report.

Numbered 0010 on purpose: 0009 belongs to another branch. Until both are merged this
one follows 0008; the merge points it at 0009 (or adds a merge migration).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0008_retention_beat_schedule")]

    operations = [
        migrations.AddField(
            model_name="driftreport",
            name="predictions",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]

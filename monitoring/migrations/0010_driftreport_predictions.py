"""Prediction drift on the drift report."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0009_prediction_owner_label_guards")]

    operations = [
        migrations.AddField(
            model_name="driftreport",
            name="predictions",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]

"""Demo models registered before the demo had its own app named their recipe by its old
import path; they now name the recipe the demo app registers."""

from django.db import migrations

OLD = "monitoring.recipes.credit_risk.retrain"
NEW = "demo.credit_risk"


def rename(apps, schema_editor):
    RegisteredModel = apps.get_model("models_registry", "RegisteredModel")
    RegisteredModel.objects.filter(retraining_recipe=OLD).update(retraining_recipe=NEW)


def unrename(apps, schema_editor):
    RegisteredModel = apps.get_model("models_registry", "RegisteredModel")
    RegisteredModel.objects.filter(retraining_recipe=NEW).update(retraining_recipe=OLD)


class Migration(migrations.Migration):
    dependencies = [("models_registry", "0001_initial")]

    operations = [migrations.RunPython(rename, unrename)]

"""The "Operators" group: may watch the dashboards and run experiments (routing policies)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Operators"
# (app, model) -> actions. Operators read the registry and monitoring data and steer
# traffic between champion and challenger; moving stages stays with data scientists.
GRANTS = {
    ("monitoring", "predictionlog"): ("view",),
    ("monitoring", "driftreport"): ("view",),
    ("monitoring", "alert"): ("view",),
    ("monitoring", "retrainingjob"): ("view",),
    ("models_registry", "registeredmodel"): ("view",),
    ("models_registry", "modelversion"): ("view",),
    ("models_registry", "modelalias"): ("view",),
    ("models_registry", "auditevent"): ("view",),
    ("inference", "routingpolicy"): ("add", "change", "view"),
}


def create_group(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure they exist now.
    for label in {app for app, _ in GRANTS}:
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    for (app, model), actions in GRANTS.items():
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label=app,
                codename__in=[f"{action}_{model}" for action in actions],
            )
        )


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("models_registry", "0001_initial"),
        ("inference", "0001_initial"),
        ("monitoring", "0002_pending_feedback"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]

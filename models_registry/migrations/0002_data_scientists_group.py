"""The "Data scientists" group: may upload models and move them between stages."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Data scientists"
# (model, actions) on this app's models; everyone else with admin access only views.
GRANTS = {
    "registeredmodel": ("add", "change", "view"),
    "modelversion": ("add", "change", "view"),
    "modelalias": ("add", "change", "view"),
    "auditevent": ("view",),
}


def create_group(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure they exist now.
    app_config = apps.get_app_config("models_registry")
    models_module = getattr(app_config, "models_module", None)
    app_config.models_module = models_module or True  # create_permissions skips None
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        app_config.models_module = models_module

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    codenames = [f"{action}_{model}" for model, actions in GRANTS.items() for action in actions]
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="models_registry", codename__in=codenames
        )
    )


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("models_registry", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]

from django.db import migrations


def grant(apps, schema_editor):
    """Triagers work the dead-letter queue too: replay or discard rejected messages."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    triagers, _ = Group.objects.get_or_create(name="Triagers")
    triagers.permissions.add(*Permission.objects.filter(content_type__app_label="demands", codename="change_rejectedmessage"))


class Migration(migrations.Migration):
    dependencies = [("demands", "0007_http_ingest")]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]

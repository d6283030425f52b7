"""Seed the privilege catalogue and the endpoints of the reference document."""

from django.db import migrations

from tokens.catalogue import ENDPOINTS, PRIVILEGES


def seed(apps, schema_editor):
    Privilege = apps.get_model("tokens", "Privilege")
    Endpoint = apps.get_model("tokens", "Endpoint")
    by_code = {}
    for code, label in PRIVILEGES.items():
        by_code[code], _ = Privilege.objects.update_or_create(code=code, defaults={"label": label})
    for path, (label, codes) in ENDPOINTS.items():
        endpoint, _ = Endpoint.objects.update_or_create(path=path, defaults={"label": label})
        endpoint.privileges.set([by_code[c] for c in codes])


class Migration(migrations.Migration):
    dependencies = [("tokens", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]

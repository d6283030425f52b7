"""provider_availabilities sums a window of days of one endpoint: a covering index lets PostgreSQL read it with an
index-only scan in key order (the primary key does not hold `count`) and aggregate per day while streaming.

PostgreSQL only (SQLite has no INCLUDE and the system check warns about it), hence SQL rather than Meta.indexes.
"""

from django.db import migrations


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            'CREATE INDEX IF NOT EXISTS "daycounter_covering" ON "availability_daycounter" '
            '("endpoint_id", "day", "status") INCLUDE ("count")'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('DROP INDEX IF EXISTS "daycounter_covering"')


class Migration(migrations.Migration):
    dependencies = [
        ("availability", "0002_counters_composite_pk"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]

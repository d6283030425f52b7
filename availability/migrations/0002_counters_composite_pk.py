"""Counters keyed by their natural key: (endpoint, bucket, status) becomes the primary key.

The surrogate `id` (a sequence value drawn by every upsert, and a third index updated by every counter update), the
unique constraint it duplicated and the single-column bucket indexes go: an ingest updates one index per row instead
of three. Django does not migrate a model to a composite primary key by itself: the state operations describe the
new models, and `to_natural_key` changes the tables (in place on PostgreSQL, by a table rebuild on SQLite).
"""

from django.db import migrations, models

TABLES = (
    ("daycounter", "day", "daycounter_key"),
    ("hourcounter", "hour", "hourcounter_key"),
    ("minutecounter", "minute", "minutecounter_key"),
)


def to_natural_key(apps, schema_editor):
    connection = schema_editor.connection
    for model_name, column, constraint in TABLES:
        model = apps.get_model("availability", model_name)
        table = model._meta.db_table
        if connection.vendor == "postgresql":
            schema_editor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{constraint}"')
            schema_editor.execute(f'ALTER TABLE "{table}" DROP COLUMN "id"')
            schema_editor.execute(
                f'ALTER TABLE "{table}" ADD PRIMARY KEY ("endpoint_id", "{column}", "status")'
            )
        else:
            schema_editor.execute(f'ALTER TABLE "{table}" RENAME TO "{table}__old"')
            schema_editor.create_model(model)
            columns = f'"endpoint_id", "{column}", "status", "count"'
            schema_editor.execute(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM "{table}__old"')
            schema_editor.execute(f'DROP TABLE "{table}__old"')


class Migration(migrations.Migration):
    dependencies = [
        ("availability", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="daycounter", name="daycounter_key"),
                migrations.RemoveConstraint(model_name="hourcounter", name="hourcounter_key"),
                migrations.RemoveConstraint(model_name="minutecounter", name="minutecounter_key"),
                migrations.RemoveIndex(model_name="hourcounter", name="hourcounter_hour_idx"),
                migrations.RemoveIndex(model_name="minutecounter", name="minutecounter_minute_idx"),
                migrations.RemoveField(model_name="daycounter", name="id"),
                migrations.RemoveField(model_name="hourcounter", name="id"),
                migrations.RemoveField(model_name="minutecounter", name="id"),
                migrations.AddField(
                    model_name="daycounter",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "endpoint",
                        "day",
                        "status",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                migrations.AddField(
                    model_name="hourcounter",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "endpoint",
                        "hour",
                        "status",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                migrations.AddField(
                    model_name="minutecounter",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "endpoint",
                        "minute",
                        "status",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
            ],
        ),
        # The bucket indexes are plain indexes on PostgreSQL; on SQLite the rebuild drops them.
        migrations.RunSQL(
            [
                'DROP INDEX IF EXISTS "hourcounter_hour_idx"',
                'DROP INDEX IF EXISTS "minutecounter_minute_idx"',
            ],
            elidable=False,
        ),
        migrations.RunPython(to_natural_key, elidable=False),
    ]

"""Drop the token_id index of the Token.privileges and Token.contacts through tables.

Django gives each foreign key of an auto-created through table its own index, and the pair its unique constraint:
(token_id, privilege_id) and (token_id, contact_id) already serve every lookup by token_id, so the index on token_id
alone is one more index to write for each link that import_tokens creates (millions per import), for nothing.

Only the database changes (the model state does not: `makemigrations` has nothing to say); the index is named as
Django's schema editor names it, and the reverse migration creates it again.
"""

from django.db import migrations


def _through_tables(apps):
    token = apps.get_model("tokens", "Token")
    return [token._meta.get_field(name).remote_field.through for name in ("privileges", "contacts")]


def _index_name(schema_editor, through) -> str:
    column = through._meta.get_field("token").column
    return schema_editor._create_index_name(through._meta.db_table, [column], suffix="")


def drop_token_indexes(apps, schema_editor):
    for through in _through_tables(apps):
        name = _index_name(schema_editor, through)
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


def create_token_indexes(apps, schema_editor):
    for through in _through_tables(apps):
        field = through._meta.get_field("token")
        schema_editor.execute(
            schema_editor._create_index_sql(through, fields=[field], name=_index_name(schema_editor, through))
        )


class Migration(migrations.Migration):
    dependencies = [("tokens", "0005_token_import_runs")]

    operations = [migrations.RunPython(drop_token_indexes, create_token_indexes, elidable=False)]

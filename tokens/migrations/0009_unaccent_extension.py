# PostgreSQL's unaccent extension, for the accent-insensitive searches of tokenmgr.search (a no-op on SQLite,
# which gets a UNACCENT() function of its own on each connection).

from django.contrib.postgres.operations import UnaccentExtension
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0008_merge_20261206_0602"),
    ]

    operations = [
        UnaccentExtension(),
    ]

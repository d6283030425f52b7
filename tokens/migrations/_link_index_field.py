"""The field migration 0006 altered the token link tables with, kept for that migration only: never use it in models.

Token.privileges and Token.contacts once had auto-created link tables; this ManyToManyField subclass left the
single-column index of either side out of them, by setting `db_index` on the auto-created link model's foreign keys.
Migration 0006 drops those indexes with it (so a database migrated from zero gets the same tables as one migrated
then); since 0015 the link tables have models of their own (tokens.models.TokenPrivilege, TokenContact), whose
foreign keys declare the same indexes. `deconstruct` keeps the options, as the migration state clones fields by it.
"""

from django.db import models


class ManyToManyField(models.ManyToManyField):
    def __init__(self, *args, source_index: bool = True, target_index: bool = True, **kwargs) -> None:
        self.source_index = source_index
        self.target_index = target_index
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if not self.source_index:
            kwargs["source_index"] = False
        if not self.target_index:
            kwargs["target_index"] = False
        return name, path, args, kwargs

    def contribute_to_class(self, cls, name, **kwargs) -> None:
        super().contribute_to_class(cls, name, **kwargs)
        through = self.remote_field.through
        if not isinstance(through, type) or not through._meta.auto_created:
            return
        # The auto-created link model's two foreign keys, in field order: to this model, then to the target.
        source, target = (f for f in through._meta.local_fields if f.is_relation)
        source.db_index = self.source_index
        target.db_index = self.target_index

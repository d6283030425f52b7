"""Model fields of the token registry."""

from django.db import models


class ManyToManyField(models.ManyToManyField):
    """A ManyToManyField whose auto-created link table can do without the single-column index of either side.

    Django indexes both foreign keys of the link table, besides the unique (source, target) pair. The source's
    index repeats the pair's leading column, and the target's is not worth its upkeep when the target has few
    rows (a few dozen privileges for millions of links). Each index left out is one entry fewer to write per
    link: `import_tokens` writes millions of them. The link table stays auto-created, so that forms and the admin
    handle the field as any other ManyToManyField; the options are part of the field's migration state, so
    migrations add or drop the indexes.
    """

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
            return  # abstract or swapped model, or a link model of the project's own
        # The auto-created link table's two foreign keys, in field order: to this model, then to the target.
        source, target = (f for f in through._meta.local_fields if f.is_relation)
        source.db_index = self.source_index
        target.db_index = self.target_index

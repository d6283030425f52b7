"""The token tables' indexes: what lookups need, no more (every index is written once per imported row)."""

import pytest
from django.db import IntegrityError, connection, transaction

from tests.factories import issue_token
from tokens.models import Token

pytestmark = pytest.mark.django_db


def indexed_columns(table: str) -> dict[tuple[str, ...], dict]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {tuple(c["columns"]): c for c in constraints.values() if c["index"] or c["unique"]}


def test_link_tables_are_indexed_by_their_pairs():
    privileges = indexed_columns(Token.privileges.through._meta.db_table)
    assert privileges[("token_id", "privilege_id")]["unique"]
    # The pair's leading column serves token lookups; a privilege's tokens need no index (few privileges).
    assert ("token_id",) not in privileges and ("privilege_id",) not in privileges
    contacts = indexed_columns(Token.contacts.through._meta.db_table)
    assert contacts[("token_id", "contact_id")]["unique"]
    assert ("token_id",) not in contacts
    assert ("contact_id",) in contacts  # deleting a contact finds its links


def test_link_tables_still_work_both_ways():
    issued = issue_token(privileges=("entreprises", "exercices"), contacts=2)
    token = issued.token
    assert sorted(token.privileges.values_list("code", flat=True)) == ["entreprises", "exercices"]
    assert Token.objects.filter(privileges__code="exercices").get() == token
    contact = token.contacts.first()
    assert list(contact.tokens.all()) == [token]
    contact.delete()
    assert token.contacts.count() == 1


def test_a_token_replaces_at_most_one_token():
    old, other, new = (issue_token().token for _ in range(3))
    old.renewed_by = new
    old.save(update_fields=["renewed_by"])
    assert list(new.renews.all()) == [old]
    other.renewed_by = new
    with pytest.raises(IntegrityError), transaction.atomic():
        other.save(update_fields=["renewed_by"])
    # Tokens not renewed (NULL) are not indexed at all on PostgreSQL: the unique index is partial.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'token_renewed_by_unique'")
            assert "WHERE (renewed_by_id IS NOT NULL)" in cursor.fetchone()[0]
        assert ("renewed_by_id",) in indexed_columns(Token._meta.db_table)


def test_link_index_options_are_part_of_the_migration_state():
    *_, kwargs = Token._meta.get_field("privileges").deconstruct()
    assert kwargs["source_index"] is False and kwargs["target_index"] is False
    *_, kwargs = Token._meta.get_field("contacts").deconstruct()
    assert kwargs["source_index"] is False and "target_index" not in kwargs

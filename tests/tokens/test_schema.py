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


# Every index of the link tables but their primary key, by columns: whether it is unique. Nothing else may index them.
LINK_TABLE_INDEXES = {
    "tokens_token_privileges": {("token_id", "privilege_id"): True},
    "tokens_token_contacts": {("token_id", "contact_id"): True, ("contact_id",): False},
}
# The same on PostgreSQL, by name as the tables were created (migrations 0001 and 0006).
LINK_TABLE_PG_INDEXES = {
    "tokens_token_privileges": [
        ("tokens_token_privileges_pkey", "btree (id)"),
        ("tokens_token_privileges_token_id_privilege_id_fdf877d5_uniq", "btree (token_id, privilege_id)"),
    ],
    "tokens_token_contacts": [
        ("tokens_token_contacts_contact_id_bb36d80d", "btree (contact_id)"),
        ("tokens_token_contacts_pkey", "btree (id)"),
        ("tokens_token_contacts_token_id_contact_id_14309766_uniq", "btree (token_id, contact_id)"),
    ],
}


@pytest.mark.parametrize("field", ["privileges", "contacts"])
def test_link_tables_have_exactly_their_indexes(field):
    """The link tables as Django created them, under link models of their own since migration 0015."""
    through = getattr(Token, field).through
    table = through._meta.db_table
    assert table == f"tokens_token_{field}"
    assert not through._meta.auto_created  # a model of the project's, declaring the indexes below
    expected = LINK_TABLE_INDEXES[table]
    found = {cols: c["unique"] for cols, c in indexed_columns(table).items() if not c["primary_key"]}
    assert found == expected
    # The models declare the same: a migration adding or dropping one of them shows as a change here.
    pairs = {
        tuple(through._meta.get_field(name).column for name in c.fields) for c in through._meta.constraints
    }
    assert pairs == {cols for cols, unique in expected.items() if unique}
    single = {(f.column,) for f in through._meta.local_fields if f.is_relation and f.db_index}
    assert single == {cols for cols, unique in expected.items() if not unique}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY 1", [table]
            )
            rows = [(name, definition.split(" USING ")[1]) for name, definition in cursor.fetchall()]
        assert rows == LINK_TABLE_PG_INDEXES[table]


def test_link_pairs_are_unique():
    issued = issue_token(privileges=("entreprises",), contacts=1)
    token = issued.token
    link = Token.privileges.through
    with pytest.raises(IntegrityError), transaction.atomic():
        link.objects.create(token=token, privilege=token.privileges.get())
    with pytest.raises(IntegrityError), transaction.atomic():
        Token.contacts.through.objects.create(token=token, contact=token.contacts.get())
    token.privileges.add(token.privileges.get())  # the relation's own writes skip the pairs already linked
    assert link.objects.filter(token=token).count() == 1

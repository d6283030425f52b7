"""Accent-insensitive search on both databases: PostgreSQL's unaccent extension, a registered function on SQLite."""

import pytest
from django.db import connection
from django.db.utils import ConnectionHandler

from tests.factories import ClientFactory, issue_token
from tokenmgr import search
from tokens.models import Client, Token


def test_fold_drops_accents_and_spells_out_ligatures():
    assert (
        search.fold("Échéance à Œuvre — cœur, Ægir, Straße, Øre")
        == "Echeance a OEuvre — coeur, AEgir, Strasse, Ore"
    )
    assert search.fold(None) is None


def test_unaccented_chooses_per_vendor(monkeypatch):
    assert search.unaccented("label") == "label__unaccent"  # PostgreSQL in the suite; SQLite alike
    monkeypatch.setattr(connection, "vendor", "mysql")
    assert search.unaccented("label") == "label"


@pytest.mark.django_db
def test_postgresql_search_uses_the_unaccent_extension():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute("SELECT extname FROM pg_extension WHERE extname = 'unaccent'")
        assert cursor.fetchone() == ("unaccent",)
    issue_token(client=ClientFactory(name="Préfecture de l'Hérault"), label="Échéancier")
    issue_token(label="Autre")
    found = Token.objects.filter(search.contains_any(["label", "client__name"], "HERAULT"))
    assert "UNACCENT" in str(found.query)
    assert [t.label for t in found] == ["Échéancier"]
    assert Token.objects.filter(search.contains_any(["label"], "echeancier")).count() == 1


@pytest.fixture
def sqlite(django_db_blocker):
    """A throw-away SQLite database beside the suite's PostgreSQL, with the clients table only."""
    handler = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
    conn = handler["default"]
    with django_db_blocker.unblock():
        conn.ensure_connection()  # fires connection_created: tokenmgr.search registers UNACCENT()
        # Not atomic: a schema editor's atomic block is looked up by alias, so it would open (and leave open) the
        # suite's own "default" PostgreSQL connection, which then keeps the test database from being dropped.
        with conn.schema_editor(atomic=False) as editor:
            editor.create_model(Client)
        yield conn
        conn.close()


def test_sqlite_gets_an_unaccent_function(sqlite):
    with sqlite.cursor() as cursor:
        cursor.execute("SELECT UNACCENT(%s), UNACCENT(NULL)", ["Échéance cœur"])
        assert cursor.fetchone() == ("Echeance coeur", None)


def test_sqlite_runs_the_same_accent_insensitive_query(sqlite):
    with sqlite.cursor() as cursor:
        for i, name in enumerate(["Préfecture de l'Hérault", "Mairie de Brest", "Taux 100% Œuvre"]):
            cursor.execute(
                "INSERT INTO tokens_client (name, siret, created_at) VALUES (%s, %s, CURRENT_TIMESTAMP)",
                [name, f"0000000000000{i}"],
            )
    queryset = Client.objects.filter(search.contains_any(["name"], "herault"))
    sql, params = queryset.values_list("name").query.get_compiler(connection=sqlite).as_sql()
    assert "UNACCENT" in sql

    def names(term):
        query = Client.objects.filter(search.contains_any(["name"], term)).values_list("name").query
        sql, params = query.get_compiler(connection=sqlite).as_sql()
        with sqlite.cursor() as cursor:
            cursor.execute(sql, params)
            return [row[0] for row in cursor.fetchall()]

    assert names("herault") == ["Préfecture de l'Hérault"]
    assert names("PRÉFECTURE") == ["Préfecture de l'Hérault"]
    assert names("oeuvre") == ["Taux 100% Œuvre"]
    assert names("0%") == ["Taux 100% Œuvre"]
    assert names("_") == []

import datetime as dt
import io
import os
import random
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.core.validators import validate_email
from django.db import connection, models

from tests.factories import ClientFactory, issue_token, make_siret
from tests.tokens.test_issue_token import cli
from tokens import credentials, importing, validity
from tokens.importing import _SIMPLE_EMAIL, COLUMNS
from tokens.models import Client, Contact, Token, TokenEvent, TokenImport
from tokens.selectors import token_by_secret

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 11, 28, 15, 30, tzinfo=PARIS)
HEADER = ",".join(COLUMNS)
SIRET_A, SIRET_B = "73282932000074", "13002526500013"


@pytest.fixture(autouse=True, params=["database", "orm"])
def writer(request, monkeypatch):
    """Every test runs with the writer of the test database and, on PostgreSQL, with the ORM writer (the
    embedded database's) as well."""
    if request.param == "orm":
        if connection.vendor != "postgresql":
            pytest.skip("the ORM writer is the database's own")
        monkeypatch.setattr(importing, "writer_class", lambda: importing.OrmWriter)
    return importing.writer_class()


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


def row(
    siret=SIRET_A,
    name="Commune A",
    label="Jeton",
    privileges="entreprises",
    issued_at="2025-06-01",
    origin="",
    contacts="",
    secret="",
) -> str:
    return ",".join([siret, name, label, privileges, issued_at, origin, contacts, secret])


def csv_file(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / f"tokens-{random.randrange(10**9)}.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def run(*args, **options) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_tokens", *map(str, args), stdout=out, stderr=err, **options)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Client, Contact, Token, TokenEvent, TokenImport))


def read_secrets(path: Path) -> dict[int, str]:
    result = {}
    for line in path.read_text().splitlines():
        number, secret = line.split(",")
        result[int(number)] = secret
    return result


def test_good_file(tmp_path, client):
    path = csv_file(
        tmp_path,
        row(
            label="Legacy",
            privileges="entreprises exercices",
            contacts="a@example.org B@example.org",
            secret="legacy-secret-0123456789",
        ),
        row(
            siret=SIRET_B,
            name='"DINUM, Paris"',
            label="Nouveau",
            issued_at="2019-05-02",
            contacts="x@example.org",
        ),
        row(
            siret=SIRET_B,
            name="",
            label="Deuxième",
            privileges="attestations_agefiph",
            issued_at="2026-01-10",
            origin="demarches_simplifiees",
        ),
    )
    secrets_out = tmp_path / "secrets.csv"
    code, out, err = run(path, secrets_out=secrets_out)
    assert code == 0, err
    assert "imported: 3, duplicates: 0" in out
    assert Client.objects.count() == 2
    assert Client.objects.get(siret=SIRET_B).name == "DINUM, Paris"

    # The existing secret keeps working; only its digest is stored.
    legacy = Token.objects.get(label="Legacy")
    assert legacy.secret_digest == credentials.digest("legacy-secret-0123456789")
    assert legacy.secret_prefix == "legacy-secre"
    response = client.get("/v2/privileges", {"token": "legacy-secret-0123456789"})
    assert response.status_code == 200
    assert sorted(response.json()["privileges"]) == ["entreprises", "exercices"]
    assert sorted(legacy.contacts.values_list("email", "role")) == [
        ("a@example.org", Contact.Role.REQUESTER),
        ("b@example.org", Contact.Role.REQUESTER),
    ]
    assert legacy.origin == "api_gouv"
    # Audit: one record per run, which every token it created points to (no per-token event rows).
    run_record = TokenImport.objects.get()
    assert run_record.file_name == str(path)
    assert (run_record.rows, run_record.imported, run_record.duplicates) == (3, 3, 0)
    assert run_record.finished_at is not None
    assert set(Token.objects.values_list("imported_by_run", flat=True)) == {run_record.pk}
    assert not legacy.events.exists()

    # Generated secrets: written with the row's line number (header = line 1), and they work.
    generated = read_secrets(secrets_out)
    assert set(generated) == {3, 4}
    assert oct(secrets_out.stat().st_mode & 0o777) == "0o600"
    nouveau = token_by_secret(secret=generated[3])
    assert nouveau.label == "Nouveau" and nouveau.origin == "demarches_simplifiees"
    assert nouveau.issued_at == dt.datetime(2019, 5, 2, tzinfo=PARIS)
    assert nouveau.expires_at == validity.expiry_for(nouveau.issued_at)
    assert list(nouveau.contacts.values_list("email", flat=True)) == ["x@example.org"]
    deuxieme = token_by_secret(secret=generated[4])
    assert deuxieme.label == "Deuxième" and deuxieme.origin == "demarches_simplifiees"
    assert deuxieme.expires_at == dt.datetime(2027, 7, 10, tzinfo=PARIS)
    response = client.get("/v2/privileges", headers={"Authorization": f"Bearer {generated[4]}"})
    assert response.status_code == 200 and response.json() == {"privileges": ["attestations_agefiph"]}
    assert generated[3].startswith("tkm_") and len(generated[3]) >= 40
    # Secrets never reach the database.
    assert not Token.objects.filter(secret_digest__in=generated.values()).exists()


def test_reimport_is_a_noop(tmp_path):
    path = csv_file(tmp_path, row(secret="legacy-secret-0123456789"), row(label="Sans secret"))
    assert run(path)[0] == 0
    before = counts()
    code, out, _ = run(path, secrets_out=tmp_path / "again.csv")
    assert code == 0 and "imported: 0, duplicates: 2" in out
    assert counts() == before
    assert (tmp_path / "again.csv").read_text() == ""


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, None])
def test_duplicates_against_the_database_and_within_the_file(tmp_path, monkeypatch, writer, chunk_rows):
    if chunk_rows:  # duplicates across chunks are found as well as within one
        monkeypatch.setattr(writer, "chunk_rows", chunk_rows)
    other = issue_token(
        client=ClientFactory(siret=SIRET_A), label="Ailleurs", issued_at=dt.datetime(2025, 6, 1, tzinfo=PARIS)
    )
    existing = issue_token(
        client=ClientFactory(siret=SIRET_B), label="Déjà là", issued_at=dt.datetime(2025, 6, 1, tzinfo=PARIS)
    )
    path = csv_file(
        tmp_path,
        row(siret=SIRET_B, label="Déjà là"),  # same (SIRET, label, issued_at) as a token in the database
        row(secret=existing.secret),  # secret already known
        row(label="Nouveau", secret="legacy-secret-aaaaaaaaaa"),
        row(label="Autre", secret="legacy-secret-aaaaaaaaaa"),  # same secret earlier in the file
        row(label="Répété"),
        row(label="Répété"),  # same key earlier in the file
        row(label="Répété", issued_at="2025-06-02"),  # another day: a different token
        row(label="Clé", secret=other.secret),  # secret already known (under another label)...
        row(label="Clé"),  # ... and a repeat of that row's key, though it was not imported
    )
    secrets_out = tmp_path / "s.csv"
    code, out, err = run(path, secrets_out=secrets_out)
    assert code == 0, err
    assert "imported: 3, duplicates: 6" in out
    assert set(read_secrets(secrets_out)) == {6, 8}
    assert not Token.objects.filter(label="Clé").exists()
    assert Token.objects.filter(label="Répété").count() == 2
    assert Token.objects.get(secret_digest=credentials.digest("legacy-secret-aaaaaaaaaa")).label == "Nouveau"


BAD_ROWS = [
    (row(siret="7328293200007"), "14 chiffres"),
    (row(siret="73282932000075"), "Luhn"),
    (row(siret="35600000009076"), "La Poste"),
    (row(privileges="entreprises inconnu"), "inconnu"),
    (row(privileges=""), "privilège"),
    (row(issued_at="2025-02-30"), "2025-02-30"),
    (row(issued_at="demain"), "demain"),
    (row(issued_at="2027-01-01"), "futur"),
    (row(origin="legacy"), "legacy"),
    (row(contacts="a@example.org pas-une-adresse"), "pas-une-adresse"),
    (row(secret='"deux mots"'), "secret"),
    (row() + ",en trop", "champ"),
]


@pytest.mark.parametrize(("bad", "needle"), BAD_ROWS)
def test_each_kind_of_bad_row_is_reported_and_nothing_is_imported(tmp_path, bad, needle):
    path = csv_file(tmp_path, row(label="ok 1"), bad, row(label="ok 2"))
    before = counts()
    secrets_out = tmp_path / "s.csv"
    code, out, err = run(path, secrets_out=secrets_out)
    assert code == 1
    reported = [line for line in err.splitlines() if line.startswith("ligne ")]
    assert len(reported) == 1 and reported[0].startswith("ligne 3 : ")
    assert needle in reported[0]
    assert "imported" not in out
    assert counts() == before
    assert not secrets_out.exists()


def test_every_bad_row_is_reported(tmp_path):
    path = csv_file(tmp_path, row(siret="123"), row(label="ok"), row(origin="x"), row(issued_at="hier"))
    code, _, err = run(path)
    assert code == 1
    assert [line.split(" : ")[0] for line in err.splitlines() if line.startswith("ligne")] == [
        "ligne 2",
        "ligne 4",
        "ligne 5",
    ]
    assert Token.objects.count() == 0


def test_missing_column(tmp_path):
    header = ",".join(c for c in COLUMNS if c != "privileges")
    path = csv_file(tmp_path, "73282932000074,A,L,2025-06-01,,,", header=header)
    code, _, err = run(path)
    assert code == 1
    assert "ligne 1 : " in err and "privileges" in err
    assert Token.objects.count() == 0


def test_columns_matched_by_name_in_any_order(tmp_path):
    header = "secret,contacts,origin,issued_at,privileges,label,name,siret"
    path = csv_file(
        tmp_path,
        f"legacy-secret-zzzzzzzzzz,c@example.org,,2025-06-01,exercices,L,Nom,{SIRET_A}",
        header=header,
    )
    assert run(path)[0] == 0
    token = Token.objects.get()
    assert (token.client.siret, token.client.name, token.label) == (SIRET_A, "Nom", "L")


def test_dry_run_writes_nothing(tmp_path):
    issue_token(
        client=ClientFactory(siret=SIRET_A), label="Déjà", issued_at=dt.datetime(2025, 6, 1, tzinfo=PARIS)
    )
    path = csv_file(tmp_path, row(label="Déjà"), row(label="Nouveau"), row(label="Nouveau"))
    before = counts()
    code, out, _ = run(path, dry_run=True, secrets_out=tmp_path / "s.csv")
    assert code == 0
    assert "imported: 1, duplicates: 2" in out
    assert counts() == before
    assert not (tmp_path / "s.csv").exists()
    # Errors are reported in a dry run too.
    code, _, err = run(csv_file(tmp_path, row(siret="1")), dry_run=True)
    assert code == 1 and "ligne 2" in err


def test_stdin(tmp_path, monkeypatch):
    data = "\n".join([HEADER, row(secret="legacy-secret-stdin-000"), row(label="B")]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    secrets_out = tmp_path / "s.csv"
    code, out, _ = run("-", secrets_out=secrets_out)
    assert code == 0 and "imported: 2, duplicates: 0" in out
    assert set(read_secrets(secrets_out)) == {3}


def test_iso_8601_with_and_without_offset(tmp_path):
    path = csv_file(
        tmp_path,
        row(label="naive", issued_at="2025-03-30T02:30:00"),  # a wall-clock time that does not exist in Paris
        row(label="naive winter", issued_at="2025-01-15T10:00:00"),
        row(label="offset", issued_at="2025-01-15T10:00:00+05:00"),
        row(label="utc", issued_at="2025-07-01T22:30:00Z"),
    )
    assert run(path)[0] == 0
    by_label = {t.label: t for t in Token.objects.all()}
    assert by_label["naive winter"].issued_at == dt.datetime(2025, 1, 15, 9, tzinfo=dt.UTC)
    assert by_label["offset"].issued_at == dt.datetime(2025, 1, 15, 5, tzinfo=dt.UTC)
    assert by_label["utc"].issued_at == dt.datetime(2025, 7, 1, 22, 30, tzinfo=dt.UTC)
    # 2025-07-02 00:30 in Paris: expiry is 2027-01-02 00:30 Paris time (winter).
    assert by_label["utc"].expires_at == dt.datetime(2027, 1, 2, 0, 30, tzinfo=PARIS)
    for token in by_label.values():
        assert token.expires_at == validity.expiry_for(token.issued_at)


def test_expired_rows_are_imported(tmp_path, client):
    path = csv_file(tmp_path, row(issued_at="2018-01-01", secret="legacy-secret-expired-00"))
    code, out, _ = run(path)
    assert code == 0 and "imported: 1" in out
    token = Token.objects.get()
    assert token.origin == "demarches_simplifiees"
    assert token.expires_at == dt.datetime(2019, 7, 1, tzinfo=PARIS)
    response = client.get("/v2/privileges", {"token": "legacy-secret-expired-00"})
    assert response.status_code == 401


def test_existing_client_and_contacts_are_reused(tmp_path):
    existing = ClientFactory(siret=SIRET_A, name="Mairie")
    Contact.objects.create(client=existing, email="A@example.org", role=Contact.Role.REQUESTER)
    path = csv_file(
        tmp_path, row(name="Autre nom", contacts="a@example.org"), row(label="2", contacts="a@EXAMPLE.org")
    )
    assert run(path)[0] == 0
    assert Client.objects.get().name == "Mairie"
    assert Contact.objects.count() == 1
    # Every spelling is stored and compared in its normalized form.
    assert all(t.contacts.get().email == "a@example.org" for t in Token.objects.all())


@pytest.mark.parametrize("chunk_rows", [1, 2, None])
def test_contacts_resolved_once_per_client_and_address(tmp_path, monkeypatch, writer, chunk_rows):
    """Within a chunk, across chunks and against the database: one contact per (client, address, role)
    whatever its case, each token linked to its own contacts only."""
    if chunk_rows:
        monkeypatch.setattr(writer, "chunk_rows", chunk_rows)
    existing = ClientFactory(siret=SIRET_A, name="Mairie")
    kept = Contact.objects.create(client=existing, email="Old@example.org", role=Contact.Role.REQUESTER)
    other_role = Contact.objects.create(
        client=existing, email="tech@example.org", role=Contact.Role.TECHNICAL
    )
    path = csv_file(
        tmp_path,
        row(label="1", contacts="old@EXAMPLE.org new@example.org"),
        row(label="2", contacts="NEW@example.org tech@example.org"),
        row(siret=SIRET_B, name="B", label="3", contacts="new@example.org"),
        row(label="4"),
        row(siret=SIRET_B, name="B", label="5", contacts="New@Example.org old@example.org"),
    )
    code, _, err = run(path)
    assert code == 0, err

    def emails(label):
        links = Token.objects.get(label=label).contacts.values_list("client__siret", "email")
        return sorted((siret, email.lower()) for siret, email in links)

    assert emails("1") == [(SIRET_A, "new@example.org"), (SIRET_A, "old@example.org")]
    assert emails("2") == [(SIRET_A, "new@example.org"), (SIRET_A, "tech@example.org")]
    assert emails("3") == [(SIRET_B, "new@example.org")]
    assert emails("4") == []
    assert emails("5") == [(SIRET_B, "new@example.org"), (SIRET_B, "old@example.org")]
    requesters = Contact.objects.filter(role=Contact.Role.REQUESTER)
    assert requesters.count() == 5  # Old (kept), new and tech for A; new and old for B
    assert Token.objects.get(label="1").contacts.filter(pk=kept.pk).exists()
    assert not Token.objects.filter(contacts=other_role).exists()  # imported contacts are requesters


def test_blank_lines_and_quoted_newlines_keep_physical_line_numbers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "\n".join([HEADER, row(name='"Deux\nlignes"'), "", row(label="après")]) + "\n", encoding="utf-8"
    )
    secrets_out = tmp_path / "s.csv"
    assert run(path, secrets_out=secrets_out)[0] == 0
    assert set(read_secrets(secrets_out)) == {2, 5}


def test_invalid_utf8_is_reported_with_its_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes((HEADER + "\n" + row() + "\n").encode() + row(name="Caf\xe9").encode("latin-1") + b"\n")
    code, _, err = run(path)
    assert code == 1 and "ligne 3" in err and "UTF-8" in err


@pytest.mark.parametrize(
    "email",
    [
        "a@example.org",
        "a.b+c@sub.example.fr",
        "x_y%z-1@a-b.co",
        "a..b@example.org",
        ".a@example.org",
        "a@-example.org",
        "a@example",
        "a@example.c",
        "a@exa_mple.org",
        "été@example.org",
        "a@example.org.",
    ],
)
def test_fast_email_check_is_a_subset_of_django(email):
    if _SIMPLE_EMAIL.fullmatch(email):
        validate_email(email)  # what the fast path accepts, Django accepts


@pytest.mark.skipif(os.environ.get("DATABASE_URL", "").startswith("sqlite"), reason="needs a server database")
def test_command_line_exit_status_and_stdin(tmp_path):
    bad = "\n".join([HEADER, row(siret="123"), row(), row(privileges="nope")]) + "\n"
    result = cli("import_tokens", "-", input=bad)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("ligne 2 : ") and lines[1].startswith("ligne 4 : ")
    assert Token.objects.count() == 0


def test_foreign_keys_hold_and_session_settings_are_restored(tmp_path):
    from django.db import connection

    path = csv_file(
        tmp_path, row(contacts="a@example.org", privileges="entreprises exercices"), row(label="2")
    )
    assert run(path)[0] == 0
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT current_setting('session_replication_role')")
            assert cursor.fetchone()[0] == "origin"
        # Every reference written in bulk points to an existing row.
        cursor.execute(
            "SELECT COUNT(*) FROM tokens_token_privileges tp LEFT JOIN tokens_token t ON t.id = tp.token_id "
            "LEFT JOIN tokens_privilege p ON p.id = tp.privilege_id WHERE t.id IS NULL OR p.id IS NULL"
        )
        assert cursor.fetchone()[0] == 0
    token = Token.objects.get(label="Jeton")
    assert token.client.siret == SIRET_A
    assert sorted(token.privileges.values_list("code", flat=True)) == ["entreprises", "exercices"]
    assert token.contacts.get().client_id == token.client_id


@pytest.mark.skipif(os.environ.get("DATABASE_URL", "").startswith("sqlite"), reason="PostgreSQL roles")
def test_import_without_the_right_to_skip_foreign_key_checks(tmp_path, monkeypatch, writer):
    """A NOSUPERUSER role with table privileges only imports the same way (its foreign keys are checked)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        owner = cursor.fetchone()[0]
        cursor.execute("DROP ROLE IF EXISTS tokenmgr_importer")
        cursor.execute("CREATE ROLE tokenmgr_importer NOSUPERUSER")
        cursor.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO tokenmgr_importer")
        cursor.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO tokenmgr_importer")
        cursor.execute("SET ROLE tokenmgr_importer")
    try:
        path = csv_file(
            tmp_path,
            row(
                contacts="a@example.org", privileges="entreprises exercices", secret="legacy-secret-role-000"
            ),
            row(label="2", contacts="b@example.org"),
            row(label="2"),
        )
        monkeypatch.setattr(writer, "chunk_rows", 1)  # several chunks
        code, out, err = run(path)
        assert code == 0, err
        assert "imported: 2, duplicates: 1" in out
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('session_replication_role')")
            assert cursor.fetchone()[0] == "origin"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {connection.ops.quote_name(owner)}")
    token = Token.objects.get(label="Jeton")
    assert token.secret_digest == credentials.digest("legacy-secret-role-000")
    assert sorted(token.privileges.values_list("code", flat=True)) == ["entreprises", "exercices"]
    assert Token.objects.get(label="2").contacts.get().email == "b@example.org"


# ---------------------------------------------------------------- --secrets-out: a new private file, or nothing
def _generating_csv(tmp_path) -> Path:
    return csv_file(tmp_path, row(label="Sans secret 1"), row(label="Sans secret 2"))


def test_secrets_out_refuses_an_existing_file(tmp_path):
    target = tmp_path / "s.csv"
    target.write_text("précieux\n")
    before = counts()
    code, out, err = run(_generating_csv(tmp_path), secrets_out=target)
    assert code == 2
    assert "existe déjà" in err and "rien n'a été importé" in err
    assert len(err.strip().splitlines()) == 1
    assert "imported" not in out
    assert counts() == before
    assert target.read_text() == "précieux\n"


@pytest.mark.parametrize("dangling", [True, False])
def test_secrets_out_refuses_a_symbolic_link(tmp_path, dangling):
    victim = tmp_path / "victim"
    if not dangling:
        victim.write_text("intact\n")
    link = tmp_path / "s.csv"
    link.symlink_to(victim)
    before = counts()
    code, _, err = run(_generating_csv(tmp_path), secrets_out=link)
    assert code == 2 and "rien n'a été importé" in err
    assert counts() == before
    assert link.is_symlink()
    assert victim.exists() != dangling
    if not dangling:
        assert victim.read_text() == "intact\n"


def test_secrets_out_is_created_0600_whatever_the_umask_without_temporary_file(tmp_path, monkeypatch):
    opened = []
    real_open = os.open

    def spy(path, flags, *args, **kwargs):
        opened.append((str(path), flags))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    source = _generating_csv(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "s.csv"
    previous = os.umask(0)
    try:
        code, out, _ = run(source, secrets_out=target)
    finally:
        os.umask(previous)
    assert code == 0 and "imported: 2" in out
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert set(read_secrets(target)) == {2, 3}
    assert os.listdir(out_dir) == ["s.csv"]
    creating = [(p, f) for p, f in opened if f & os.O_CREAT]
    assert creating == [(str(target), creating[0][1])]
    assert creating[0][1] & os.O_EXCL and creating[0][1] & os.O_NOFOLLOW


def test_secrets_out_is_removed_when_the_import_fails(tmp_path, monkeypatch):
    target = tmp_path / "s.csv"
    # A bad row: nothing imported, no file.
    code, _, _ = run(csv_file(tmp_path, row(label="ok"), row(siret="1")), secrets_out=target)
    assert code == 1 and not target.exists()

    # A failure while writing (after secrets were written to the file): rolled back, file removed.
    write = importing.writer_class().write

    def broken(self):
        write(self)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(importing.writer_class(), "write", broken)
    before = counts()
    code, _, err = run(_generating_csv(tmp_path), secrets_out=target)
    assert code != 0 and "No space left on device" in err
    assert counts() == before
    assert not target.exists()
    assert os.listdir(tmp_path) == [p.name for p in tmp_path.iterdir() if p.suffix == ".csv" and p != target]


@pytest.mark.skipif(os.environ.get("DATABASE_URL", "").startswith("sqlite"), reason="needs a server database")
def test_secrets_out_refusal_on_the_command_line(tmp_path):
    target = tmp_path / "s.csv"
    target.write_text("")
    result = cli("import_tokens", str(_generating_csv(tmp_path)), "--secrets-out", str(target))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "existe déjà" in result.stderr
    assert Token.objects.count() == 0


@pytest.mark.skipif(os.environ.get("DATABASE_URL", "").startswith("sqlite"), reason="PostgreSQL's writer")
def test_a_database_error_in_a_chunk_rolls_everything_back(tmp_path, monkeypatch, writer):
    """A statement that fails in the database while Python validates the next chunk (pipeline mode) stops the
    import: nothing is kept, the secrets file is removed, one line says why, and the connection works on."""
    monkeypatch.setattr(writer, "chunk_rows", 2)
    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute(
            "CREATE FUNCTION refuse_j3() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.label = 'J3' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER refuse_j3 BEFORE INSERT ON tokens_token FOR EACH ROW EXECUTE FUNCTION refuse_j3()"
        )
    target = tmp_path / "s.csv"
    before = counts()
    code, out, err = run(csv_file(tmp_path, *(row(label=f"J{i}") for i in range(7))), secrets_out=target)
    assert code == 1 and "imported" not in out
    assert "refused by the test" in err and "rien n'a été importé" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not target.exists()
    assert counts() == before  # read on the same connection, after the failed pipeline
    assert connection.connection.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF


@pytest.mark.skipif(os.environ.get("DATABASE_URL", "").startswith("sqlite"), reason="PostgreSQL's writer")
def test_a_failure_to_write_secrets_while_a_chunk_is_in_the_database_rolls_everything_back(
    tmp_path, monkeypatch, writer
):
    """The secrets of a chunk are written while the database works on the next one: if that write fails at the end
    of the file (disk full), the chunk still in the database is let finish, then everything is rolled back."""
    monkeypatch.setattr(writer, "chunk_rows", 2)
    init = writer.__init__
    reported: list[list[int]] = []
    writers = []  # kept alive: leaving pipeline mode must not wait for the garbage collector

    def failing_init(self, *, on_generated, **kwargs):
        writers.append(self)

        def report(lines):
            reported.append(list(lines))
            if len(reported) == 2:
                raise OSError(28, "No space left on device")
            on_generated(reported[-1])

        init(self, on_generated=report, **kwargs)

    monkeypatch.setattr(writer, "__init__", failing_init)
    target = tmp_path / "s.csv"
    before = counts()
    code, _, err = run(csv_file(tmp_path, *(row(label=f"J{i}") for i in range(5))), secrets_out=target)
    assert code != 0 and "No space left on device" in err
    assert counts() == before  # and the connection works on, out of pipeline mode
    assert connection.connection.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
    assert not target.exists()


# ---------------------------------------------------------------- time per row, whatever the data's shape
def _shaped_csv(tmp_path: Path, *, rows: int, clients: int, contacts: int, seed: int) -> Path:
    """`rows` rows over `clients` clients, each row with two of its client's `contacts` addresses."""
    rng = random.Random(seed)
    sirets = [make_siret(rng) for _ in range(clients)]
    lines = []
    for i in range(rows):
        c = i % clients
        emails = " ".join(f"c{k}@client{c}.example.org" for k in rng.sample(range(contacts), 2))
        secret = f"legacy-{seed}-{i:08d}" if i % 2 else ""
        lines.append(row(siret=sirets[c], name=f"Client {c}", label=f"J{i}", contacts=emails, secret=secret))
    return csv_file(tmp_path, *lines)


def _seconds_per_row(tmp_path, **shape) -> float:
    path = _shaped_csv(tmp_path, **shape)
    started = time.perf_counter()
    code, out, err = run(path)
    elapsed = time.perf_counter() - started
    assert code == 0, err
    assert f"imported: {shape['rows']}," in out
    return elapsed / shape["rows"]


def test_time_per_row_does_not_grow_with_the_tokens_per_client(tmp_path, monkeypatch, writer):
    """3,000 rows held by one client sharing 500 contacts cost about as much per row as 3,000 rows spread over
    1,500 clients: no phase compares a token with the other tokens or contacts of its client (a quadratic phase
    would make the first one tens of times slower). Best of two runs each, and a generous bound: the machine may
    be busy."""
    rows = 3_000
    if writer is importing.PostgresWriter:  # several chunks: rows probe those of earlier chunks too
        monkeypatch.setattr(writer, "chunk_rows", 1_000)
    spread = min(_seconds_per_row(tmp_path, rows=rows, clients=rows // 2, contacts=4, seed=s) for s in (1, 2))
    crowded = min(_seconds_per_row(tmp_path, rows=rows, clients=1, contacts=500, seed=s) for s in (3, 4))
    assert crowded / spread < 3, (writer.__name__, crowded / spread)
    assert Token.objects.count() == 4 * rows
    assert Token.contacts.through.objects.count() == 2 * 4 * rows
    # Every token↔contact link stays within one client (a plain join: the correlated form of this check could take
    # minutes on a table just filled, before its statistics exist).
    links = Token.contacts.through.objects
    assert not links.exclude(contact__client_id=models.F("token__client_id")).exists()


# ---------------------------------------------------------------- statistics of the written tables (PostgreSQL)
def _postgres_only(writer):
    if writer is not importing.PostgresWriter:
        pytest.skip("PostgreSQL's writer only")


def test_vacuum_and_analyze_wait_for_the_import(tmp_path, writer):
    """While the import runs, no other session can take the lock that (auto)VACUUM and ANALYZE need on the tables it
    writes: an ANALYZE by another session, blind to the import's rows, would mislead the plans of its next
    statements. The application's own reads and writes are not blocked."""
    _postgres_only(writer)
    import psycopg

    settings = connection.settings_dict
    other = psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"],
        host=settings["HOST"],
        port=settings["PORT"],
        autocommit=True,
    )
    seen: list[tuple[str, str]] = []

    def probe(_message: str) -> None:
        for table in ("tokens_token", "tokens_token_privileges", "tokens_token_contacts", "tokens_contact"):
            try:
                with other.transaction():
                    other.execute(f"LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE NOWAIT")
            except psycopg.errors.LockNotAvailable:
                seen.append((table, "vacuum blocked"))
            with other.transaction():  # the application's own writes and reads still go through
                other.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE NOWAIT")
                other.execute(f"SELECT count(*) FROM {table}")

    path = csv_file(tmp_path, *(row(label=f"J{i}", contacts="a@example.org") for i in range(3)))
    try:
        with path.open("rb") as source:
            result = importing.tokens_import(
                source=source, on_error=pytest.fail, on_progress=probe, progress_every=1
            )
    finally:
        other.close()
    assert result.imported == 3
    assert {table for table, _ in seen} == {
        "tokens_token",
        "tokens_token_privileges",
        "tokens_token_contacts",
        "tokens_contact",
    }


def test_a_role_that_does_not_own_the_tables_imports_with_a_warning(tmp_path, writer, caplog):
    """Refreshing the statistics needs the tables' owner; another role with the table privileges imports all the
    same, and is told that statistics were left as they were."""
    _postgres_only(writer)
    role = f"import_probe_{os.getpid()}_{random.randrange(10**6)}"
    with connection.cursor() as cursor:  # all of it undone with the test's transaction
        cursor.execute(f"CREATE ROLE {role} NOSUPERUSER")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        cursor.execute(f"SET ROLE {role}")
    try:
        path = csv_file(tmp_path, *(row(label=f"J{i}", contacts=f"p{i}@example.org") for i in range(5)))
        with path.open("rb") as source, caplog.at_level("WARNING", logger="tokens.importing"):
            result = importing.tokens_import(source=source, on_error=pytest.fail)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert result.imported == 5
    assert Token.objects.count() == 5 and Token.contacts.through.objects.count() == 5
    assert "statistics are not refreshed" in caplog.text

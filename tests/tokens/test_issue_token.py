import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from tests.factories import ClientFactory, make_siret
from tokens import credentials
from tokens.models import Client, Contact, Token, TokenEvent

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 11, 28, 15, 30, tzinfo=PARIS)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


def issue(*args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `issue_token ARGS` through call_command."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("issue_token", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), err.getvalue()


def counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Client, Contact, Token, TokenEvent))


def test_happy_path(client):
    siret = make_siret()
    code, out, err = issue(
        "--siret",
        siret,
        "--privileges",
        "entreprises,attestations_agefiph",
        "--name",
        "Commune de Test",
        "--contact",
        "Alice@Example.org",
        "--contact",
        "bob@example.org",
        "--label",
        "Portail usagers",
    )
    assert code == 0 and err == ""
    secret = out.splitlines()[-1]
    assert secret.startswith("tkm_") and " " not in secret
    token = Token.objects.get()
    assert token.client.siret == siret and token.client.name == "Commune de Test"
    assert token.label == "Portail usagers"
    assert token.issued_at == NOW
    assert token.expires_at == dt.datetime(2028, 5, 28, 15, 30, tzinfo=PARIS)
    assert token.origin == "api_gouv"
    # Only a digest and a display prefix are stored.
    assert token.secret_digest == credentials.digest(secret) != secret
    assert secret not in {token.secret_prefix, token.secret_digest}
    assert sorted(token.contacts.values_list("email", "role")) == [
        ("alice@example.org", Contact.Role.REQUESTER),  # stored normalized
        ("bob@example.org", Contact.Role.REQUESTER),
    ]
    assert token.events.get().kind == TokenEvent.Kind.ISSUED
    response = client.get("/v2/privileges", {"token": secret})
    assert response.status_code == 200
    assert sorted(response.json()["privileges"]) == ["attestations_agefiph", "entreprises"]


def test_existing_client_and_contact_are_reused():
    existing = ClientFactory(name="Mairie")
    assert issue("--siret", existing.siret, "--privileges", "exercices", "--contact", "a@example.org")[0] == 0
    assert issue("--siret", existing.siret, "--privileges", "exercices", "--contact", "A@example.org")[0] == 0
    assert Client.objects.count() == 1
    assert Client.objects.get().name == "Mairie"
    assert Contact.objects.count() == 1
    assert Token.objects.count() == 2


@pytest.mark.parametrize(
    ("day", "origin"),
    [("2019-08-31", "demarches_simplifiees"), ("2019-09-01", "api_gouv")],
)
def test_default_origin_both_sides_of_september_2019(day, origin):
    code, _, _ = issue("--siret", make_siret(), "--privileges", "entreprises", "--issued-at", day)
    assert code == 0
    token = Token.objects.get()
    assert token.origin == origin
    # A date means that day at 00:00 in TIME_ZONE; expiry is the same day 18 months later at 00:00.
    assert token.issued_at == dt.datetime.fromisoformat(day).replace(tzinfo=PARIS)


def test_explicit_origin_and_month_end_clamp():
    code, _, _ = issue(
        "--siret",
        make_siret(),
        "--privileges",
        "entreprises",
        "--issued-at",
        "2024-08-31",
        "--origin",
        "demarches_simplifiees",
    )
    assert code == 0
    token = Token.objects.get()
    assert token.origin == "demarches_simplifiees"
    assert token.expires_at == dt.datetime(2026, 2, 28, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--siret", "7328293200007"], "14 chiffres"),
        (["--siret", "732829320000745"], "14 chiffres"),
        (["--siret", "7328293200007A"], "14 chiffres"),
        (["--siret", "73282932000075"], "Luhn"),
        (["--siret", "35600000009076"], "La Poste"),
        (["--privileges", "entreprises,inexistant"], "inexistant"),
        (["--privileges", " , "], "privilège"),
        (["--issued-at", "2024-02-30"], "2024-02-30"),
        (["--issued-at", "31/12/2024"], "31/12/2024"),
        (["--issued-at", "2027-01-01"], "futur"),
        (["--origin", "legacy"], "legacy"),
        (["--contact", "pas-une-adresse"], "pas-une-adresse"),
    ],
)
def test_refusals_write_nothing(args, needle):
    base = {"--siret": "73282932000074", "--privileges": "entreprises"}
    extra = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in base:
            base[flag] = value
        else:
            extra += [flag, value]
    before = counts()
    code, out, message = issue(*[x for kv in base.items() for x in kv], *extra)
    assert code != 0
    assert needle in message
    assert "\n" not in message.strip()
    assert out == ""
    assert counts() == before


def test_la_poste_siret_is_accepted():
    assert issue("--siret", "35600000009075", "--privileges", "entreprises")[0] == 0
    assert Client.objects.get().siret == "35600000009075"


def cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """The real command line, on the test database (only for refusals: they must not write anything)."""
    settings_dict = connection.settings_dict
    url = (
        f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}/{settings_dict['NAME']}"
        if connection.vendor == "postgresql"
        else f"sqlite:///{settings_dict['NAME']}"
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args, "--skip-checks"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(os.environ.get("DATABASE_URL", "").startswith("sqlite"), reason="needs a server database")
def test_command_line_refusal_is_one_stderr_line_and_nonzero_exit():
    before = counts()
    result = cli("issue_token", "--siret", "73282932000075", "--privileges", "entreprises")
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Luhn" in lines[0] and "Traceback" not in result.stderr
    # A missing argument is one line too.
    result = cli("issue_token", "--privileges", "entreprises")
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert counts() == before

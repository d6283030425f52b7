import datetime as dt
import io
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tokens.management.commands.load_demo_data import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    CLIENTS,
    INTEGRATOR_PASSWORD,
    INTEGRATOR_USERNAME,
)
from tokens.models import Client, Contact, Token, TokenEvent
from tokens.siret import siret_error

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 10, 11, 0, tzinfo=ZoneInfo("Europe/Paris"))


def load() -> str:
    out = io.StringIO()
    call_command("load_demo_data", stdout=out)
    return out.getvalue()


def snapshot():
    User = get_user_model()
    return {
        "users": list(User.objects.order_by("pk").values_list("email", "password", "is_superuser")),
        "clients": list(Client.objects.order_by("pk").values_list("siret", "name")),
        "members": sorted(Client.members.through.objects.values_list("client_id", "user_id")),
        "contacts": list(Contact.objects.order_by("pk").values_list("client_id", "email", "role")),
        "tokens": list(
            Token.objects.order_by("pk").values_list(
                "label", "secret_digest", "issued_at", "expires_at", "revoked_at", "renewed_by_id", "origin"
            )
        ),
        "events": TokenEvent.objects.count(),
    }


def test_demo_sirets_are_valid():
    for siret, _name, _member in CLIENTS:
        assert siret_error(siret) is None, siret


@time_machine.travel(NOW, tick=False)
def test_idempotent_and_prints_logins(client):
    first = load()
    assert first.count("tkm_") == Token.objects.count() > 0  # each new secret printed once, on creation
    before = snapshot()

    second = load()
    assert snapshot() == before
    assert "tkm_" not in second
    for out in (first, second):
        assert f"Connexion admin : http://127.0.0.1:8000/admin/ — {ADMIN_USERNAME} / {ADMIN_PASSWORD}" in out
        assert f"{INTEGRATOR_USERNAME} / {INTEGRATOR_PASSWORD}" in out

    assert client.login(username=ADMIN_USERNAME, password=ADMIN_PASSWORD)
    assert client.get("/admin/tokens/token/").status_code == 200
    assert client.login(username=INTEGRATOR_USERNAME, password=INTEGRATOR_PASSWORD)


@time_machine.travel(NOW, tick=False)
def test_stages():
    load()
    tokens = {t.label: t for t in Token.objects.select_related("client")}
    statuses = {t.status_at() for t in tokens.values()}
    assert statuses == {"active", "expiring", "expired", "revoked", "superseded"}
    assert {t.origin for t in tokens.values()} == {"api_gouv", "demarches_simplifiees"}

    fresh = tokens["Démo · jeton neuf"]
    assert fresh.issued_at == NOW
    assert tokens["Démo · échéance à 80 jours"].days_left == 80
    assert tokens["Démo · échéance à 20 jours"].days_left == 20
    assert tokens["Démo · jeton expiré"].status_at() == "expired"
    assert tokens["Démo · jeton révoqué"].revocation_reason
    old = tokens["Démo · ancien jeton (remplacé)"]
    assert old.status_at() == "superseded"
    assert old.renewed_by == tokens["Démo · jeton de renouvellement"]
    legacy_2019 = tokens["Démo · demarches-simplifiees.fr (2019)"]
    assert (legacy_2019.origin, legacy_2019.status_at()) == ("demarches_simplifiees", "expired")
    legacy_live = tokens["Démo · demarches-simplifiees.fr encore valide"]
    assert legacy_live.origin == "demarches_simplifiees"
    assert legacy_live.is_usable() and legacy_live.days_left == 60
    assert all(t.contacts.exists() for t in tokens.values())

    integrator = get_user_model().objects.get(email=INTEGRATOR_USERNAME)
    assert Token.objects.for_user(integrator).count() >= 5
    assert not integrator.is_staff


def test_later_run_adds_nothing():
    with time_machine.travel(NOW, tick=False):
        load()
        before = snapshot()
    with time_machine.travel(NOW + dt.timedelta(days=40), tick=False):
        load()
        assert snapshot() == before

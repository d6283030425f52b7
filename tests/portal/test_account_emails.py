"""Login-link, password-reset and sign-up emails: nobody learns which addresses have an account.

The views answer the same page for every address (known or not, over its own limit or not) and never look it up;
a Celery task, run here directly or eagerly, counts the address, looks it up and sends where it should.
"""

import datetime as dt
import logging
import re

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal import services, tasks
from tests.factories import UserFactory
from tokenmgr.client_ip import parse_trusted_proxies

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 3, 10, 9, 0, 5, tzinfo=dt.UTC)
KNOWN, UNKNOWN = "ana@example.org", "nobody@example.org"
FORMS = {
    "login_link": ("/connexion/lien/demander/", "/connexion/lien/envoye/"),
    "password_reset": ("/connexion/mot-de-passe/", "/connexion/mot-de-passe/envoye/"),
    "signup": ("/inscription/", None),
}


@pytest.fixture
def known(db):
    return UserFactory(username=KNOWN)


@pytest.fixture
def ask(celery_eager, django_capture_on_commit_callbacks):
    """POST a form from a client address; the on-commit work (the task) runs at once. Returns (response, queries
    made by the view itself)."""

    def post(kind: str, email: str, remote_addr: str = "198.51.100.7", **meta):
        url = FORMS[kind][0]
        client = Client(REMOTE_ADDR=remote_addr, **meta)
        with (
            django_capture_on_commit_callbacks(execute=True) as callbacks,
            CaptureQueriesContext(connection) as queries,
        ):
            response = client.post(url, {"email": email})
        response.callbacks = callbacks
        response.queries = [q["sql"] for q in queries]
        return response

    return post


def _same(a, b) -> bool:
    """Same status, same redirect, same page (the CSRF token of a rendered page differs per client)."""

    def shape(r):
        body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", r.content.decode())
        return r.status_code, r.get("Location"), body.replace(KNOWN, "@").replace(UNKNOWN, "@")

    return shape(a) == shape(b)


@time_machine.travel(START, tick=False)
@pytest.mark.parametrize("kind", list(FORMS))
def test_the_answer_is_the_same_with_or_without_an_account(ask, known, kind):
    for_known = ask(kind, KNOWN)
    for_unknown = ask(kind, UNKNOWN)
    assert for_known.status_code in (200, 302)
    assert _same(for_known, for_unknown)
    if FORMS[kind][1]:
        assert for_known["Location"] == FORMS[kind][1]
    # The view never looks an account up: one task enqueued on commit, whatever the address.
    for response in (for_known, for_unknown):
        assert not [sql for sql in response.queries if "auth_user" in sql]
        assert len(response.callbacks) == 1
    # The task sent where it should: login link and reset to the account only; sign-up to the new address only
    # (the known one gets a login link instead of a useless sign-up link).
    recipients = [m.to for m in mail.outbox]
    if kind == "signup":
        assert recipients == [[KNOWN], [UNKNOWN]]
        assert "/connexion/lien/" in mail.outbox[0].body and "/inscription/confirmer/" in mail.outbox[1].body
    else:
        assert recipients == [[KNOWN]]


@time_machine.travel(START, tick=False)
@pytest.mark.parametrize("kind", list(FORMS))
def test_the_answer_is_the_same_over_the_per_address_limit(ask, known, kind):
    first = [
        ask(kind, KNOWN, remote_addr=f"198.51.100.{i}") for i in range(services.ACCOUNT_EMAILS_PER_ADDRESS)
    ]
    assert len(mail.outbox) == services.ACCOUNT_EMAILS_PER_ADDRESS
    over = ask(kind, KNOWN, remote_addr="198.51.100.200")
    fresh = ask(kind, "someone.else@example.org", remote_addr="198.51.100.201")
    assert _same(over, first[0]) and over.status_code == fresh.status_code
    assert over.get("Location") == fresh.get("Location")
    assert len(mail.outbox) == services.ACCOUNT_EMAILS_PER_ADDRESS + (
        kind == "signup"
    )  # nothing more to KNOWN
    assert all(m.to == [KNOWN] for m in mail.outbox[: services.ACCOUNT_EMAILS_PER_ADDRESS])
    # An hour later the address gets mail again.
    with time_machine.travel(START + dt.timedelta(hours=1), tick=False):
        ask(kind, KNOWN, remote_addr="198.51.100.202")
    assert mail.outbox[-1].to == [KNOWN]


@time_machine.travel(START, tick=False)
def test_the_per_address_limit_covers_every_kind_and_ascii_case(ask, known):
    for i in range(services.ACCOUNT_EMAILS_PER_ADDRESS):
        ask(["login_link", "password_reset"][i % 2], "ANA@Example.org" if i % 2 else KNOWN)
    assert len(mail.outbox) == services.ACCOUNT_EMAILS_PER_ADDRESS
    ask("signup", "Ana@EXAMPLE.ORG")
    assert len(mail.outbox) == services.ACCOUNT_EMAILS_PER_ADDRESS


@time_machine.travel(START, tick=False)
@pytest.mark.parametrize("kind", list(FORMS))
def test_too_many_requests_from_one_client_ip_is_a_429(ask, kind):
    limit = services.ACCOUNT_EMAIL_REQUESTS_PER_IP
    codes = [ask(kind, f"person{i}@example.org").status_code for i in range(limit + 1)]
    assert codes[-1] == 429 and 429 not in codes[:-1]
    blocked = ask(kind, "another@example.org")
    assert blocked.status_code == 429 and int(blocked["Retry-After"]) > 0 and blocked.callbacks == []
    assert "Trop de tentatives" in blocked.content.decode()
    assert ask(kind, "another@example.org", remote_addr="198.51.100.8").status_code != 429
    assert len(mail.outbox) == (limit + 1 if kind == "signup" else 0)  # no account among them


@time_machine.travel(START, tick=False)
def test_the_per_ip_limit_keys_on_the_client_behind_a_trusted_proxy(ask, settings):
    settings.TRUSTED_PROXIES = parse_trusted_proxies("10.0.0.0/8")
    for i in range(services.ACCOUNT_EMAIL_REQUESTS_PER_IP):
        ask("login_link", f"p{i}@example.org", remote_addr="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.1")
    assert (
        ask("login_link", "x@example.org", "10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.1").status_code == 429
    )
    assert (
        ask("login_link", "x@example.org", "10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.2").status_code == 302
    )


# ---------------------------------------------------------------------------------------------------------------
# The task, run directly
# ---------------------------------------------------------------------------------------------------------------
@time_machine.travel(START, tick=False)
def test_the_task_sends_only_where_it_should(db, settings):
    settings.SITE_URL = "https://tokenmgr.example.fr"
    UserFactory(username="ana@example.org")
    UserFactory(username="staff@example.org", is_staff=True)
    UserFactory(username="gone@example.org", is_active=False)
    send = tasks.account_email_send  # the Celery task, called as a function

    assert send("login_link", "Ana@Example.org", "/webhooks/") == 1
    assert mail.outbox[-1].to == ["ana@example.org"] and "next=%2Fwebhooks%2F" in mail.outbox[-1].body
    for email in ["nobody@example.org", "staff@example.org", "gone@example.org", "not an address"]:
        assert send("login_link", email) == 0
    assert send("password_reset", "ana@example.org") == 1
    assert mail.outbox[-1].body.count("https://tokenmgr.example.fr/connexion/mot-de-passe/") == 1
    assert send("password_reset", "staff@example.org") == 1  # staff reset their password like anyone
    assert send("password_reset", "gone@example.org") == 0
    assert send("password_reset", "nobody@example.org") == 0
    assert send("signup", "new@example.org", "/demandes/") == 1
    assert "/inscription/confirmer/" in mail.outbox[-1].body
    assert send("signup", "ana@example.org") == 1 and "/connexion/lien/" in mail.outbox[-1].body
    assert send("signup", "staff@example.org") == 0  # no login link to staff: nothing
    assert [m.to for m in mail.outbox] == [
        ["ana@example.org"],
        ["ana@example.org"],
        ["staff@example.org"],
        ["new@example.org"],
        ["ana@example.org"],
    ]
    with pytest.raises(ValueError):
        services.account_email_request(kind="spam", email="ana@example.org")


@time_machine.travel(START, tick=False)
def test_a_broker_failure_changes_nothing_in_the_answer(
    known, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.account_email_send, "delay", down)
    caplog.set_level(logging.ERROR)
    client = Client()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/connexion/lien/demander/", {"email": KNOWN})
    assert response.status_code == 302 and response["Location"] == "/connexion/lien/envoye/"
    assert "could not enqueue a login_link email" in caplog.text and KNOWN not in caplog.text
    assert mail.outbox == []

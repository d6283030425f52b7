"""Password logins, portal and /admin/, throttled per (account, client IP) by django-axes (tokenmgr/login_throttle.py)."""

import datetime as dt
import logging

import pytest
import time_machine
from axes.models import AccessAttempt
from django.test import Client
from sesame.utils import get_token, get_user

from tests.factories import UserFactory
from tokenmgr.client_ip import parse_trusted_proxies

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
START = dt.datetime(2026, 3, 10, 9, 0, 5, tzinfo=dt.UTC)
ALICE, BOB = "203.0.113.1", "203.0.113.2"


@pytest.fixture(autouse=True)
def _fast_hashes(settings):
    """Dozens of password checks per test: a fast hasher (the throttle does not depend on it)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class Door:
    """One login form (portal or admin), tried from a given client address."""

    def __init__(self, kind: str):
        self.kind = kind
        self.url = "/connexion/" if kind == "portal" else "/admin/login/"

    def account(self, username: str):
        return UserFactory(username=username, is_staff=self.kind == "admin")

    def attempt(self, username: str, password: str, **meta):
        client = Client(**meta)
        response = client.post(self.url, {"username": username, "password": password, "next": "/admin/"})
        response.signed_in = "_auth_user_id" in client.session
        return response


@pytest.fixture(params=["portal", "admin"])
def door(request):
    return Door(request.param)


def _fail(door: Door, username: str, times: int, **meta) -> list[int]:
    return [door.attempt(username, "mauvais mot de passe", **meta).status_code for _ in range(times)]


@time_machine.travel(START, tick=False)
def test_ten_failures_lock_that_account_from_that_ip_only(door):
    door.account("ana@example.org")
    door.account("bea@example.org")
    assert _fail(door, "ana@example.org", 9, REMOTE_ADDR=ALICE) == [200] * 9
    assert _fail(door, "ana@example.org", 1, REMOTE_ADDR=ALICE) == [429]

    refused = door.attempt("ana@example.org", PASSWORD, REMOTE_ADDR=ALICE)  # the right password too
    assert refused.status_code == 429 and not refused.signed_in
    assert refused["Retry-After"] == "900"
    body = refused.content.decode()
    assert "Connexion temporairement bloquée" in body and "fr-alert" in body and 'lang="fr"' in body

    # The same account from another client IP, and another account from the same IP, still sign in.
    assert door.attempt("ana@example.org", PASSWORD, REMOTE_ADDR=BOB).signed_in
    assert door.attempt("bea@example.org", PASSWORD, REMOTE_ADDR=ALICE).signed_in
    # Refused attempts are not counted: still exactly the ten failures.
    assert AccessAttempt.objects.get(username="ana@example.org", ip_address=ALICE).failures_since_start == 10


def test_the_lock_ends_fifteen_minutes_after_the_last_failure(door):
    door.account("ana@example.org")
    with time_machine.travel(START, tick=False):
        _fail(door, "ana@example.org", 10, REMOTE_ADDR=ALICE)
    with time_machine.travel(START + dt.timedelta(minutes=14, seconds=59), tick=False):
        assert door.attempt("ana@example.org", PASSWORD, REMOTE_ADDR=ALICE).status_code == 429
    with time_machine.travel(START + dt.timedelta(minutes=15, seconds=1), tick=False):
        response = door.attempt("ana@example.org", PASSWORD, REMOTE_ADDR=ALICE)
        assert response.status_code == 302 and response.signed_in


@time_machine.travel(START, tick=False)
def test_a_success_clears_the_failures(door):
    door.account("ana@example.org")
    _fail(door, "ana@example.org", 9, REMOTE_ADDR=ALICE)
    assert door.attempt("ana@example.org", PASSWORD, REMOTE_ADDR=ALICE).signed_in
    assert _fail(door, "ana@example.org", 9, REMOTE_ADDR=ALICE) == [200] * 9


@time_machine.travel(START, tick=False)
def test_the_account_key_ignores_ascii_case(door):
    door.account("ana@example.org")
    _fail(door, "ANA@Example.org", 5, REMOTE_ADDR=ALICE)
    _fail(door, " ana@example.org", 5, REMOTE_ADDR=ALICE)
    assert door.attempt("ana@example.org", PASSWORD, REMOTE_ADDR=ALICE).status_code == 429


@time_machine.travel(START, tick=False)
def test_clients_behind_a_trusted_proxy_are_told_apart(door, settings):
    settings.TRUSTED_PROXIES = parse_trusted_proxies("10.0.0.0/8")
    door.account("ana@example.org")
    via_proxy = {"REMOTE_ADDR": "10.0.0.5"}
    _fail(door, "ana@example.org", 10, **via_proxy, HTTP_X_FORWARDED_FOR=ALICE)
    assert (
        door.attempt("ana@example.org", PASSWORD, **via_proxy, HTTP_X_FORWARDED_FOR=ALICE).status_code == 429
    )
    # A spoofed left-most entry does not unlock Alice: the proxy appended her real address.
    spoofed = door.attempt("ana@example.org", PASSWORD, **via_proxy, HTTP_X_FORWARDED_FOR=f"{BOB}, {ALICE}")
    assert spoofed.status_code == 429
    # Bob, behind the same proxy, signs in.
    assert door.attempt("ana@example.org", PASSWORD, **via_proxy, HTTP_X_FORWARDED_FOR=BOB).signed_in


@time_machine.travel(START, tick=False)
def test_without_trusted_proxies_forwarded_for_does_not_escape_the_lock(door):
    door.account("ana@example.org")
    for i in range(10):
        door.attempt("ana@example.org", "x", REMOTE_ADDR=ALICE, HTTP_X_FORWARDED_FOR=f"192.0.2.{i}")
    response = door.attempt(
        "ana@example.org", PASSWORD, REMOTE_ADDR=ALICE, HTTP_X_FORWARDED_FOR="192.0.2.200"
    )
    assert response.status_code == 429 and not response.signed_in


# ---------------------------------------------------------------------------------------------------------------
# Login links (django-sesame) are not password logins: never counted, never refused
# ---------------------------------------------------------------------------------------------------------------
@time_machine.travel(START, tick=False)
def test_a_locked_account_still_signs_in_with_an_emailed_link():
    user = UserFactory(username="ana@example.org")
    door = Door("portal")
    _fail(door, "ana@example.org", 10, REMOTE_ADDR=ALICE)
    client = Client(REMOTE_ADDR=ALICE)
    response = client.post("/connexion/lien/", {"token": get_token(user, scope="login")})
    assert response.status_code == 303 and client.session["_auth_user_id"] == str(user.pk)


@time_machine.travel(START, tick=False)
def test_bad_links_and_requestless_authentication_are_left_alone(caplog):
    caplog.set_level(logging.INFO)
    user = UserFactory(username="ana@example.org")
    client = Client(REMOTE_ADDR=ALICE)
    for _ in range(12):
        assert client.post("/connexion/lien/", {"token": "x" * 40}).status_code == 403
    assert get_user("x" * 40, scope="login") is None  # authenticate() with no request at all
    assert AccessAttempt.objects.count() == 0
    assert not [r for r in caplog.records if r.name.startswith("axes") and r.levelno >= logging.WARNING]
    assert get_user(get_token(user, scope="login"), scope="login") == user  # spends it (last_login)
    user.refresh_from_db()
    response = client.post("/connexion/lien/", {"token": get_token(user, scope="login")})
    assert response.status_code == 303

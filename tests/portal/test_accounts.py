"""Sign-in pages: password login, emailed login links, logout, password reset."""

import datetime as dt
import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from sesame.utils import get_token

from notifications.recipients import magic_link_scope
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
LINK_RE = re.compile(r"https?://\S+/connexion/lien/\?\S+")


@pytest.fixture
def site(settings):
    settings.SITE_URL = "https://tokenmgr.example.fr"
    return settings.SITE_URL


@pytest.fixture
def linkless(db):
    """An account created by a reminder's magic link: no usable password."""
    user = get_user_model()(email="marie.curie@example.org")
    user.set_unusable_password()
    user.save()
    return user


@pytest.fixture
def ask(client, celery_eager, django_capture_on_commit_callbacks):
    """POST to a form that sends an email, the request's on-commit work (the Celery task) run at once."""

    def post(url, data, on=None):
        with django_capture_on_commit_callbacks(execute=True):
            return (on or client).post(url, data)

    return post


def _link_from_outbox() -> str:
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    links = LINK_RE.findall(message.body)
    assert len(links) == 1
    html = message.alternatives[0][0]
    assert links[0].replace("&", "&amp;") in html
    return links[0]


def _local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _query(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# ---------------------------------------------------------------------------------------------------------------
# Login page and password login
# ---------------------------------------------------------------------------------------------------------------
def test_login_page_offers_both_ways(client):
    response = client.get("/connexion/?next=/webhooks/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'action="/connexion/"' in body and 'action="/connexion/lien/demander/"' in body
    assert body.count('name="next" value="/webhooks/"') == 2
    assert 'autocomplete="current-password"' in body and 'autocomplete="email"' in body
    assert reverse("password_reset") in body and reverse("signup") in body
    assert body.count("csrfmiddlewaretoken") >= 3  # both forms + language switch


def test_password_login_goes_to_next(client):
    UserFactory(email="ana@example.org")
    response = client.post(
        "/connexion/", {"username": "ana@example.org", "password": PASSWORD, "next": "/webhooks/"}
    )
    assert response.status_code == 302 and response["Location"] == "/webhooks/"
    assert client.get("/").status_code == 200


def test_password_login_ignores_foreign_next(client):
    UserFactory(email="ana@example.org")
    response = client.post(
        "/connexion/", {"username": "ana@example.org", "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"


def test_bad_password_is_an_error_tied_to_the_form(client):
    UserFactory(email="ana@example.org")
    response = client.post("/connexion/", {"username": "ana@example.org", "password": "nope"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Adresse e-mail ou mot de passe incorrect" in body and 'role="alert"' in body
    assert "_auth_user_id" not in client.session


def test_logout_is_post_only_and_goes_back_to_login(client):
    client.force_login(UserFactory())
    assert client.get("/deconnexion/").status_code == 405
    response = client.post("/deconnexion/", follow=True)
    assert response.redirect_chain[-1][0] == "/connexion/"
    assert "Vous êtes déconnecté(e)" in response.content.decode()
    assert client.get("/").status_code == 302


# ---------------------------------------------------------------------------------------------------------------
# Login links
# ---------------------------------------------------------------------------------------------------------------
def test_login_link_signs_in_after_confirmation(client, linkless, site, ask):
    response = ask("/connexion/lien/demander/", {"email": "Marie.Curie@EXAMPLE.org", "next": "/calendrier/"})
    assert response.status_code == 302 and response["Location"] == reverse("login_link_sent")
    link = _link_from_outbox()
    assert link.startswith(f"{site}/connexion/lien/?token=")
    assert mail.outbox[0].to == ["marie.curie@example.org"]
    assert _query(link)["next"] == "/calendrier/"

    # GET (a mail scanner, or the person) only shows a button: nobody is signed in, the link is not spent.
    for _ in range(2):
        page = client.get(_local(link))
        assert page.status_code == 200 and "no-store" in page["Cache-Control"]
        assert page["Referrer-Policy"] == "same-origin"
        body = page.content.decode()
        assert "marie.curie@example.org" in body and "Continuer" in body
        assert "_auth_user_id" not in client.session

    response = client.post("/connexion/lien/", _query(link))
    assert response.status_code == 303 and response["Location"] == "/calendrier/"
    assert client.session["_auth_user_id"] == str(linkless.pk)
    assert client.get("/").status_code == 200

    # Single use.
    other = Client()
    assert other.post("/connexion/lien/", _query(link)).status_code == 403
    assert other.get(_local(link)).status_code == 403


def test_login_link_answer_is_the_same_without_account(client, linkless, ask):
    known = ask("/connexion/lien/demander/", {"email": "marie.curie@example.org"})
    unknown = ask("/connexion/lien/demander/", {"email": "nobody@example.org"})
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert len(mail.outbox) == 1
    body = client.get(unknown["Location"]).content.decode()
    assert "Si un compte existe pour cette adresse" in body


def test_no_login_link_for_staff_or_inactive(client, ask):
    UserFactory(email="admin@example.org", is_staff=True)
    UserFactory(email="gone@example.org", is_active=False)
    for email in ["admin@example.org", "gone@example.org"]:
        assert ask("/connexion/lien/demander/", {"email": email}).status_code == 302
    assert mail.outbox == []


def test_login_link_bad_address_is_a_field_error(client, ask):
    response = ask("/connexion/lien/demander/", {"email": "pas-une-adresse"})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'aria-describedby="id_email-desc-error"' in body and "fr-input-group--error" in body
    assert mail.outbox == []


def test_login_link_drops_a_foreign_next(client, linkless, ask):
    ask("/connexion/lien/demander/", {"email": linkless.email, "next": "https://evil.example/"})
    link = _link_from_outbox()
    assert "next" not in _query(link)
    assert client.post("/connexion/lien/", _query(link))["Location"] == "/"


def test_login_link_expires_after_an_hour(client, linkless, ask):
    with time_machine.travel(dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC), tick=False):
        ask("/connexion/lien/demander/", {"email": linkless.email})
    link = _link_from_outbox()
    with time_machine.travel(dt.datetime(2026, 3, 10, 10, 1, tzinfo=dt.UTC), tick=False):
        response = client.get(_local(link))
    assert response.status_code == 403
    assert "n'est plus valable" in response.content.decode()


def test_reminder_links_and_tampered_links_do_not_sign_in(client, linkless):
    import uuid

    reminder_token = get_token(linkless, scope=magic_link_scope(uuid.uuid4()))
    for token in [reminder_token, "x" * 40, ""]:
        assert client.get("/connexion/lien/", {"token": token}).status_code == 403
        assert client.post("/connexion/lien/", {"token": token}).status_code == 403
    assert "_auth_user_id" not in client.session


def test_login_link_is_never_logged(client, linkless, caplog, ask):
    caplog.set_level(logging.DEBUG)
    ask("/connexion/lien/demander/", {"email": linkless.email})
    link = _link_from_outbox()
    token = _query(link)["token"]
    client.get(_local(link))
    client.post("/connexion/lien/", _query(link))
    client.post("/connexion/lien/", _query(link))  # spent: a 403, still not logged
    for record in caplog.records:
        assert token not in record.getMessage()
    from tokenmgr.logging import redact

    assert token not in redact(f'"GET {_local(link)} HTTP/1.1" 200')


def test_account_forms_require_csrf(linkless):
    csrf_client = Client(enforce_csrf_checks=True)
    token = get_token(linkless, scope="login")
    for url, data in [
        ("/connexion/", {"username": linkless.email, "password": "x"}),
        ("/connexion/lien/demander/", {"email": linkless.email}),
        ("/connexion/lien/", {"token": token}),
        ("/connexion/mot-de-passe/", {"email": linkless.email}),
    ]:
        assert csrf_client.post(url, data).status_code == 403, url
    assert mail.outbox == []
    assert "_auth_user_id" not in csrf_client.session


# ---------------------------------------------------------------------------------------------------------------
# Password reset (also sets a first password on accounts created by magic links)
# ---------------------------------------------------------------------------------------------------------------
def test_password_reset_serves_accounts_without_password(client, linkless, site, ask):
    response = ask("/connexion/mot-de-passe/", {"email": "MARIE.curie@example.org"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["marie.curie@example.org"] and "mot de passe" in message.subject.lower()
    link = re.search(rf"{re.escape(site)}(/connexion/mot-de-passe/\S+/)", message.body).group(1)
    page = client.get(link, follow=True)
    assert page.status_code == 200 and "Choisissez votre mot de passe" in page.content.decode()
    set_url = page.redirect_chain[-1][0]
    done = client.post(
        set_url, {"new_password1": "un nouveau mot de passe", "new_password2": "un nouveau mot de passe"}
    )
    assert done["Location"] == reverse("password_reset_complete")
    assert client.get(done["Location"]).status_code == 200
    linkless.refresh_from_db()
    assert linkless.check_password("un nouveau mot de passe")
    assert client.get(link, follow=True).content.decode().count("plus valable") == 1  # single use


def test_password_reset_is_silent_for_unknown_address(client, ask):
    response = ask("/connexion/mot-de-passe/", {"email": "nobody@example.org"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []
    assert "Si un compte existe" in client.get(response["Location"]).content.decode()


def test_password_reset_mismatch_is_a_field_error(client, linkless, ask):
    ask("/connexion/mot-de-passe/", {"email": linkless.email})
    link = re.search(r"https?://\S+?(/connexion/mot-de-passe/\S+/)", mail.outbox[0].body).group(1)
    set_url = client.get(link, follow=True).redirect_chain[-1][0]
    response = client.post(
        set_url, {"new_password1": "un nouveau mot de passe", "new_password2": "autre chose"}
    )
    assert response.status_code == 200
    assert "fr-input-group--error" in response.content.decode()


def test_login_pages_in_english(client):
    client.post("/i18n/setlang/", {"language": "en", "next": "/connexion/"})
    body = client.get("/connexion/").content.decode()
    assert 'lang="en"' in body
    assert "Sign in" in body and "Password" in body and "Receive a login link" in body

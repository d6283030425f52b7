"""Signed login links in reminder emails: confirmation on GET, login on POST, single use, one client only."""

import datetime as dt
import re

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client as HttpClient

from notifications import services
from notifications.magic_links import SESSION_CLIENT_KEY
from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory
from tokens.models import Contact

EMAIL = "agent@commune.example.org"


@pytest.fixture
def browser():
    return HttpClient(enforce_csrf_checks=True)


def link_for(email: str, message) -> str:
    match = re.search(rf"pour {re.escape(email)} : (\S+)", message.body)
    assert match, message.body
    return match.group(1)


def local(url: str) -> str:
    return url.removeprefix("https://jetons.example.gouv.fr")


@pytest.fixture
def setup(token_factory, today):
    client_a = ClientFactory(name="Commune A")
    client_b = ClientFactory(name="Commune B")
    a = token_factory(30, client=client_a, contacts=[ContactFactory(client=client_a, email=EMAIL)]).token
    legacy = token_factory(
        30,
        client=client_a,
        origin="demarches_simplifiees",
        contacts=[ContactFactory(client=client_a, email=EMAIL.upper(), role=Contact.Role.REQUESTER)],
    ).token
    b = token_factory(200, client=client_b, contacts=[ContactFactory(client=client_b, email=EMAIL)]).token
    services.reminders_sweep(today=today)
    assert services.reminders_deliver().sent == 2
    by_token = {m.extra_headers["X-Token-Id"]: m for m in mail.outbox}
    user = get_user_model().objects.get(email=EMAIL)
    ClientMembershipFactory(
        client=client_b, user=user
    )  # also a member of another client, through a normal account
    return {
        "a": a,
        "legacy": legacy,
        "b": b,
        "user": user,
        "url_a": local(link_for(EMAIL, by_token[str(a.public_id)])),
        "url_legacy": local(link_for(EMAIL, by_token[str(legacy.public_id)])),  # stored normalized
    }


def confirm(browser, url):
    page = browser.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Continuer" in html
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    return page, csrf


def test_get_shows_a_confirmation_without_logging_in_or_writing(browser, setup):
    page, _ = confirm(browser, setup["url_a"])
    assert "_auth_user_id" not in browser.session
    assert page["Cache-Control"] == "no-store"
    setup["user"].refresh_from_db()
    assert setup["user"].last_login is None
    assert not setup["a"].client.members.filter(pk=setup["user"].pk).exists()
    # A scanner fetching it twice does not spend it.
    confirm(browser, setup["url_a"])


def test_post_logs_in_and_redirects_to_the_clean_page(browser, setup):
    path = f"/jetons/{setup['a'].public_id}/renouveler/"
    assert setup["url_a"].startswith(path + "?sesame=")
    _, csrf = confirm(browser, setup["url_a"])
    response = browser.post(setup["url_a"], {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 303 and response["Location"] == path
    assert int(browser.session["_auth_user_id"]) == setup["user"].pk
    assert browser.session[SESSION_CLIENT_KEY] == setup["a"].client_id
    assert browser.get(path).status_code == 200
    assert setup["a"].client.members.filter(pk=setup["user"].pk).exists()


def test_post_without_csrf_is_refused(browser, setup):
    response = browser.post(setup["url_a"])
    assert response.status_code == 403
    assert "_auth_user_id" not in browser.session


def test_legacy_route_link_works_too(browser, setup):
    _, csrf = confirm(browser, setup["url_legacy"])
    response = browser.post(setup["url_legacy"], {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 303
    assert response["Location"] == f"/migration/{setup['legacy'].public_id}/"


def test_reused_link_explains_and_offers_login(browser, setup):
    _, csrf = confirm(browser, setup["url_a"])
    browser.post(setup["url_a"], {"csrfmiddlewaretoken": csrf})
    other = HttpClient(enforce_csrf_checks=True)
    page = other.get(setup["url_a"])
    assert page.status_code == 403
    html = page.content.decode()
    assert "n'est plus valable" in html and "/connexion/?next=" in html
    assert "_auth_user_id" not in other.session
    # The one who used it is already signed in: the link just takes them to the page.
    assert browser.get(setup["url_a"]).status_code == 302


def test_expired_link_explains(browser, setup, settings):
    with time_machine.travel(dt.timedelta(seconds=settings.SESAME_MAX_AGE + 60)):
        page = browser.get(setup["url_a"])
    assert page.status_code == 403 and "n'est plus valable" in page.content.decode()


def test_link_is_bound_to_its_token_page(browser, setup):
    query = setup["url_a"].split("?", 1)[1]
    page = browser.get(f"/migration/{setup['legacy'].public_id}/?{query}")
    assert page.status_code == 403


def test_session_is_for_that_client_only(browser, setup):
    _, csrf = confirm(browser, setup["url_a"])
    browser.post(setup["url_a"], {"csrfmiddlewaretoken": csrf})
    assert browser.get(f"/jetons/{setup['a'].public_id}/renouveler/").status_code == 200
    # The user is a member of client B, but this session was opened by a link for client A.
    assert browser.get(f"/jetons/{setup['b'].public_id}/renouveler/").status_code == 404
    assert browser.get(f"/migration/{setup['b'].public_id}/").status_code == 404
    # A normal login lifts the restriction.
    browser.force_login(setup["user"])
    assert SESSION_CLIENT_KEY not in browser.session
    assert browser.get(f"/jetons/{setup['b'].public_id}/renouveler/").status_code == 200


def test_no_longer_a_contact_is_refused(browser, setup):
    _, csrf = confirm(browser, setup["url_a"])
    setup["a"].contacts.clear()
    response = browser.post(setup["url_a"], {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 403
    assert "_auth_user_id" not in browser.session


def test_staff_accounts_get_no_magic_link(token_factory, today):
    from tests.factories import UserFactory

    UserFactory(email="boss@example.org", is_staff=True)
    client = ClientFactory()
    token_factory(30, client=client, contacts=[ContactFactory(client=client, email="boss@example.org")])
    services.reminders_sweep(today=today)
    services.reminders_deliver()
    (message,) = mail.outbox
    assert "sesame=" not in message.body

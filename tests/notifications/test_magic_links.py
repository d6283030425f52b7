"""Signed login links in reminder emails: one per message, for its addressee only; confirmation on GET, login on
POST, single use; the session it opens reaches that token's renewal only."""

import datetime as dt
import re
from urllib.parse import urlencode

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core import mail
from django.test import Client as HttpClient
from django.urls import reverse
from sesame.utils import get_query_string

from notifications import delivery, recipients, sweep
from notifications.magic_links import SESSION_CLIENT_KEY, SESSION_TOKEN_KEY
from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, UserFactory
from tests.tokens.test_requests import full_data
from tokens.models import AccessRequest, Contact
from tokens.services import access_request_create

EMAIL = "agent@commune.example.org"
LINK = re.compile(r"https://jetons\.example\.gouv\.fr/\S+\?sesame=[^\s\"<]+")


@pytest.fixture
def browser():
    return HttpClient(enforce_csrf_checks=True)


def links_in(message) -> set[str]:
    """Every sign-in link of a message, in its text and HTML parts (the same ones)."""
    text = set(LINK.findall(message.body))
    html = {link.replace("&amp;", "&") for link in LINK.findall(message.alternatives[0][0])}
    assert text == html
    return text


def link_of(message) -> str:
    (link,) = links_in(message)
    return local(link)


def local(url: str) -> str:
    return url.removeprefix("https://jetons.example.gouv.fr")


def user(email: str):
    return get_user_model().objects.get(email=email)


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
    sweep.reminders_sweep(today=today)
    assert delivery.reminders_deliver().sent == 2
    by_token = {m.extra_headers["X-Token-Id"]: m for m in mail.outbox}
    holder = user(EMAIL)  # one account for both spellings of the address
    ClientMembershipFactory(
        client=client_b, user=holder
    )  # also a member of another client, through a normal account
    return {
        "a": a,
        "legacy": legacy,
        "b": b,
        "user": holder,
        "url_a": link_of(by_token[str(a.public_id)]),
        "url_legacy": link_of(by_token[str(legacy.public_id)]),
    }


def confirm(browser, url):
    page = browser.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Continuer" in html
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    return page, csrf


def sign_in(browser, url):
    _, csrf = confirm(browser, url)
    return browser.post(url, {"csrfmiddlewaretoken": csrf})


def signed_in_as(browser):
    user_id = browser.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id) if user_id else None


# -- one message per recipient, one link per message ----------------------------------------------------------------
def test_a_colleague_link_is_never_in_your_message_and_cannot_sign_you_in_as_them(token_factory, today):
    """The reproduction: two contacts of one token. Each gets a message of their own, with one To and only their own
    link; the link in Alice's message signs in Alice, never Bob."""
    client = ClientFactory(name="Commune")
    alice = ContactFactory(client=client, email="alice@example.org", role=Contact.Role.REQUESTER)
    bob = ContactFactory(client=client, email="bob@example.org")
    token = token_factory(30, client=client, contacts=[alice, bob]).token
    sweep.reminders_sweep(today=today)
    assert delivery.reminders_deliver().sent == 2
    assert sorted(m.to for m in mail.outbox) == [["alice@example.org"], ["bob@example.org"]]
    messages = {m.to[0]: m for m in mail.outbox}
    links = {address: links_in(message) for address, message in messages.items()}
    for address, message in messages.items():
        assert message.cc == [] and message.bcc == [] and len(links[address]) == 1
        other = "bob@example.org" if address == "alice@example.org" else "alice@example.org"
        raw = message.message().as_string()
        assert other not in raw and other not in message.body and other not in message.alternatives[0][0]
        assert not links[address] & links[other]
        assert "1 autre contact de ce jeton a reçu ce rappel" in message.body
    for address in messages:
        browser = HttpClient(enforce_csrf_checks=True)
        (link,) = links[address]
        response = sign_in(browser, local(link))
        assert response.status_code == 303
        assert signed_in_as(browser) == user(address)
        assert browser.session[SESSION_TOKEN_KEY] == str(token.public_id)


# -- confirmation, single use ---------------------------------------------------------------------------------------
def test_get_shows_a_confirmation_without_logging_in_or_writing(browser, setup):
    page, _ = confirm(browser, setup["url_a"])
    assert "_auth_user_id" not in browser.session
    assert page["Cache-Control"] == "no-store"
    assert EMAIL in page.content.decode()
    setup["user"].refresh_from_db()
    assert setup["user"].last_login is None
    assert not setup["a"].client.members.filter(pk=setup["user"].pk).exists()
    # A scanner fetching it twice does not spend it.
    confirm(browser, setup["url_a"])


def test_post_logs_in_and_redirects_to_the_clean_page(browser, setup):
    path = f"/jetons/{setup['a'].public_id}/renouveler/"
    assert setup["url_a"].startswith(path + "?sesame=")
    response = sign_in(browser, setup["url_a"])
    assert response.status_code == 303 and response["Location"] == path
    assert int(browser.session["_auth_user_id"]) == setup["user"].pk
    assert browser.session[SESSION_CLIENT_KEY] == setup["a"].client_id
    assert browser.session[SESSION_TOKEN_KEY] == str(setup["a"].public_id)
    assert browser.get(path).status_code == 200
    assert setup["a"].client.members.filter(pk=setup["user"].pk).exists()


def test_post_without_csrf_is_refused(browser, setup):
    response = browser.post(setup["url_a"])
    assert response.status_code == 403
    assert "_auth_user_id" not in browser.session


def test_legacy_route_link_works_too(browser, setup):
    response = sign_in(browser, setup["url_legacy"])
    assert response.status_code == 303
    assert response["Location"] == f"/migration/{setup['legacy'].public_id}/"


def test_reused_link_explains_and_offers_login(browser, setup):
    sign_in(browser, setup["url_a"])
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


# -- checks at use ----------------------------------------------------------------------------------------------------
def test_no_longer_a_contact_is_refused(browser, setup):
    _, csrf = confirm(browser, setup["url_a"])
    setup["a"].contacts.clear()
    response = browser.post(setup["url_a"], {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 403
    assert "_auth_user_id" not in browser.session


@pytest.mark.parametrize("change", [{"is_staff": True}, {"is_superuser": True}, {"is_active": False}])
def test_staff_or_inactive_user_link_is_refused_at_use(browser, setup, change):
    _, csrf = confirm(browser, setup["url_a"])
    get_user_model().objects.filter(pk=setup["user"].pk).update(**change)
    assert browser.get(setup["url_a"]).status_code == 403  # the confirmation page is not shown any more
    response = browser.post(setup["url_a"], {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 403
    assert "_auth_user_id" not in browser.session
    assert not setup["a"].client.members.filter(pk=setup["user"].pk).exists()


def test_a_contact_matching_only_by_non_ascii_case_is_not_the_user(token_factory, today, browser):
    """The link of the user 'jose@exémple.org' does not open a token whose contact is a look-alike differing by a
    non-ASCII letter ('jose@exÉmple.org' is refused at input: no IDNA 2008 case mapping; 'jose@exèmple.org' is
    another domain)."""
    client = ClientFactory()
    mine = token_factory(
        30, client=client, contacts=[ContactFactory(client=client, email="jose@exémple.org")]
    )
    sweep.reminders_sweep(today=today)
    delivery.reminders_deliver()
    holder = user("jose@xn--exmple-cva.org")
    other = token_factory(30, client=client).token
    other.contacts.set([ContactFactory(client=client, email="jose@exèmple.org", role=Contact.Role.REQUESTER)])
    url = reverse("token_renew", args=[other.public_id]) + get_query_string(
        holder, scope=recipients.magic_link_scope(other.public_id)
    )
    assert browser.get(url).status_code == 403
    assert link_of(mail.outbox[0]).startswith(f"/jetons/{mine.token.public_id}/renouveler/?sesame=")


def test_staff_accounts_get_no_magic_link(token_factory, today):
    UserFactory(email="boss@example.org", is_staff=True)
    client = ClientFactory()
    token_factory(30, client=client, contacts=[ContactFactory(client=client, email="boss@example.org")])
    sweep.reminders_sweep(today=today)
    delivery.reminders_deliver()
    (message,) = mail.outbox
    assert "sesame=" not in message.body


def test_no_account_is_created_for_a_staff_address(token_factory, today):
    UserFactory(email="Chief@Example.org", is_staff=True)  # stored normalized
    client = ClientFactory()
    token_factory(30, client=client, contacts=[ContactFactory(client=client, email="chief@example.org")])
    sweep.reminders_sweep(today=today)
    delivery.reminders_deliver()
    (message,) = mail.outbox
    assert message.to == ["chief@example.org"] and "sesame=" not in message.body
    # The staff account is the only one of that address: no link user was created beside it.
    assert list(
        get_user_model().objects.filter(email="chief@example.org").values_list("is_staff", flat=True)
    ) == [True]


def test_link_users_are_looked_up_and_created_by_normalized_address(db):
    existing = UserFactory(email="known@example.org")
    users = recipients.link_users_get_or_create(emails={"known@example.org", "new@xn--exmple-cva.org"})
    assert users["known@example.org"] == existing
    created = users["new@xn--exmple-cva.org"]
    assert created.email == "new@xn--exmple-cva.org" and not created.has_usable_password()
    assert recipients.link_users_get_or_create(emails={"new@xn--exmple-cva.org"}) == {
        "new@xn--exmple-cva.org": created
    }


# -- the session a link opens -----------------------------------------------------------------------------------------
def test_session_is_for_that_token_renewal_only(browser, setup):
    sign_in(browser, setup["url_a"])
    a, legacy, b = setup["a"], setup["legacy"], setup["b"]
    assert browser.get(f"/jetons/{a.public_id}/renouveler/").status_code == 200
    assert browser.get(reverse("portal_token", args=[a.public_id])).status_code == 200
    refused = [
        "/",  # the dashboard
        reverse("portal_token", args=[b.public_id]),  # another client's token (the user is a member)
        f"/jetons/{b.public_id}/renouveler/",
        reverse("portal_token", args=[legacy.public_id]),  # another token of the same client
        f"/migration/{legacy.public_id}/",
        reverse("token_pickup", args=[a.public_id]),
        reverse("portal_webhooks"),
        reverse("portal_calendar"),
        reverse("portal_verify"),
        reverse("request_list"),
        reverse("request_new"),
    ]
    for url in refused:
        response = browser.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == reverse("login") + "?" + urlencode({"next": url}, safe="/"), url
    notes = [str(m) for m in get_messages(browser.get("/").wsgi_request)]
    assert any("connectez-vous avec votre mot de passe ou un lien de connexion" in n for n in notes)
    # A POST elsewhere is refused the same way, and changes nothing.
    response = browser.post(
        reverse("portal_token_revoke", args=[a.public_id]),
        {"reason": "x", "confirm": "on", "csrfmiddlewaretoken": browser.cookies["csrftoken"].value},
    )
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")
    a.refresh_from_db()
    assert a.revoked_at is None
    # Sign-in pages stay reachable, to sign in fully.
    assert browser.get(reverse("login")).status_code == 200
    # A full login lifts the restriction.
    browser.force_login(setup["user"])
    assert SESSION_TOKEN_KEY not in browser.session and SESSION_CLIENT_KEY not in browser.session
    assert browser.get(f"/jetons/{b.public_id}/renouveler/").status_code == 200
    assert browser.get("/").status_code == 200


def test_session_reaches_the_requests_made_for_its_token(browser, setup):
    sign_in(browser, setup["url_a"])
    holder = setup["user"]
    own = access_request_create(
        client=setup["a"].client, kind="renewal", applicant=holder, data=full_data(), token=setup["a"]
    )
    other = access_request_create(
        client=setup["a"].client,
        kind="new",
        applicant=holder,
        data=full_data(),
        token=setup["legacy"],
    )
    assert browser.get(reverse("request_detail", args=[own.public_id])).status_code == 200
    assert browser.get(reverse("request_edit", args=[own.public_id])).status_code == 200
    assert browser.get(reverse("request_detail", args=[other.public_id])).status_code == 302
    assert AccessRequest.objects.count() == 2


def test_logout_stays_reachable(browser, setup):
    sign_in(browser, setup["url_a"])
    response = browser.post(reverse("logout"), {"csrfmiddlewaretoken": browser.cookies["csrftoken"].value})
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert "_auth_user_id" not in browser.session

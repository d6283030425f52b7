"""Every portal URL: sign-in required, another client's objects are 404, every form needs its CSRF token, and a
session opened by a reminder's link opens its token's page only."""

import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from notifications.magic_links import SESSION_CLIENT_KEY, SESSION_TOKEN_KEY
from notifications.models import ReminderOptOut, WebhookEndpoint
from portal import urls as portal_urls
from portal.models import CalendarFeed
from tests.factories import ClientFactory, ClientMembershipFactory, issue_token
from tokens.models import Token

pytestmark = pytest.mark.django_db

PUBLIC = {
    "login",
    "login_link",
    "login_link_request",
    "login_link_sent",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    "logout",
    "set_language",
    "portal_calendar_feed",  # authenticated by the unguessable key in its URL
    "accessibility",
    "signup",
}
# URL name -> methods it answers (the others are 405)
SIGNED_IN = {
    "portal_dashboard": ["get"],
    "portal_export": ["get"],
    "portal_token_search": ["post"],
    "portal_token": ["get"],
    "portal_token_decline": ["post"],
    "portal_token_resume": ["post"],
    "portal_token_revoke": ["get", "post"],
    "portal_token_exposed": ["get", "post"],
    "portal_verify": ["get", "post"],
    "portal_calendar": ["get", "post"],
    "portal_webhooks": ["get", "post"],
    "portal_webhook": ["get"],
    "portal_webhook_action": ["post"],
    "reauth": ["get", "post"],
    "reauth_link": ["get", "post"],
    "portal_access": ["get"],
}
POST_DATA = {
    "reason": "x",
    "confirm": "on",
    "action": "disable",
    "secret": "x",
    "url": "https://x.example.fr",
}


def test_every_portal_url_is_covered_here():
    names = {p.name for p in portal_urls.urlpatterns if isinstance(p, URLPattern)}
    assert names == PUBLIC | SIGNED_IN.keys()


@pytest.fixture
def foreign_objects(foreign):
    endpoint = WebhookEndpoint.objects.create(
        client=foreign.token.client, url="https://x.example.fr", secret="s"
    )
    return {"public_id": foreign.token.public_id, "pk": endpoint.pk}


def _url(name: str, objects: dict) -> str:
    pattern = next(p for p in portal_urls.urlpatterns if getattr(p, "name", None) == name)
    kwargs = {k: objects[k] for k in pattern.pattern.converters}
    return reverse(name, kwargs=kwargs)


@pytest.mark.parametrize("name", sorted(SIGNED_IN))
def test_anonymous_is_sent_to_login(client, name, foreign_objects):
    url = _url(name, foreign_objects)
    for method in SIGNED_IN[name]:
        response = getattr(client, method)(url, POST_DATA)
        assert response.status_code == 302, (name, method)
        assert response["Location"].startswith("/connexion/?next=")


WITH_OBJECT = sorted(p.name for p in portal_urls.urlpatterns if p.name in SIGNED_IN and p.pattern.converters)


def test_object_urls():
    assert len(WITH_OBJECT) == 7  # each one checked below against another client's objects


@pytest.mark.parametrize("name", WITH_OBJECT)
def test_other_clients_objects_are_404_on_every_url(logged, name, foreign_objects, foreign):
    unknown = {"public_id": uuid.uuid4(), "pk": 10**9}
    for objects in (foreign_objects, unknown):
        url = _url(name, objects)
        for method in SIGNED_IN[name]:
            assert getattr(logged, method)(url, POST_DATA).status_code == 404, (name, method, url)
    foreign.token.refresh_from_db()
    assert foreign.token.revoked_at is None and not ReminderOptOut.objects.exists()
    assert WebhookEndpoint.objects.get().disabled_at is None


@pytest.mark.parametrize("name", sorted(n for n in SIGNED_IN if "post" in SIGNED_IN[n]))
def test_every_signed_in_form_requires_csrf(member, own, name):
    endpoint = WebhookEndpoint.objects.create(client=own.token.client, url="https://x.example.fr", secret="s")
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(member)
    url = _url(name, {"public_id": own.token.public_id, "pk": endpoint.pk})
    assert csrf_client.post(url, {**POST_DATA, "action": "generate"}).status_code == 403
    own.token.refresh_from_db()
    assert own.token.revoked_at is None and not ReminderOptOut.objects.exists()
    assert not CalendarFeed.objects.exists()


def test_language_switch_requires_csrf(member):
    csrf_client = Client(enforce_csrf_checks=True)
    assert csrf_client.post("/i18n/setlang/", {"language": "en", "next": "/"}).status_code == 403


def test_calendar_feed_key_is_unguessable_and_revocable(logged, own):
    assert logged.get(reverse("portal_calendar_feed", kwargs={"key": "x" * 43})).status_code == 404
    logged.post(reverse("portal_calendar"), {"action": "generate"})
    feed = CalendarFeed.objects.get()
    assert not hasattr(feed, "key")  # only a digest is stored


# ---------------------------------------------------------------------------------------------------------------
# Session opened by a reminder's link: its token's renewal only
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def scoped(client, member, own_client, own):
    """The member also belongs to a second client, but signed in through a reminder link for `own`."""
    second = ClientFactory(name="Deuxième organisation")
    ClientMembershipFactory(client=second, user=member)
    other = issue_token(client=second, label="Jeton de la deuxième organisation")
    endpoint = WebhookEndpoint.objects.create(client=second, url="https://y.example.fr", secret="s")
    client.force_login(member)
    session = client.session
    session[SESSION_CLIENT_KEY] = own_client.pk
    session[SESSION_TOKEN_KEY] = str(own.token.public_id)
    session.save()
    return {"token": other.token, "endpoint": endpoint, "client": second}


def test_scoped_session_opens_its_token_page_only(client, scoped, own):
    assert client.get(reverse("portal_token", args=[own.token.public_id])).status_code == 200
    for url in (
        "/",
        reverse("portal_token", args=[scoped["token"].public_id]),
        reverse("portal_webhooks"),
        reverse("portal_webhook", args=[scoped["endpoint"].pk]),
        reverse("portal_calendar"),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/connexion/?next="), url


def test_scoped_session_cannot_mint_a_calendar_feed(client, scoped, own):
    assert client.post(reverse("portal_calendar"), {"action": "generate"}).status_code == 302
    assert not CalendarFeed.objects.exists()
    # the login page stays reachable to sign in fully
    assert client.get("/connexion/").status_code == 200


def test_full_login_lifts_the_scope(client, scoped, own, member):
    client.post("/connexion/", {"username": member.email, "password": "correct horse battery staple"})
    body = client.get("/").content.decode()
    assert "Jeton de la deuxième organisation" in body
    assert Token.objects.for_user(member).count() == 2

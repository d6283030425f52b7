"""Recent authentication ("sudo mode"): sensitive actions need a password or a fresh emailed link within 15 minutes."""

import datetime as dt
import re
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from sesame.utils import get_token

from notifications.magic_links import SESSION_CLIENT_KEY
from notifications.models import WebhookEndpoint
from notifications.recipients import magic_link_scope
from portal import reauth as pages
from portal.models import CalendarFeed
from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, issue_token
from tokenmgr import reauth
from tokens.models import Token, TokenEvent

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
START = dt.datetime(2026, 3, 11, 9, 0, tzinfo=dt.UTC)
REAUTH_LINK_RE = re.compile(r"https?://\S+/reauth/lien/\?\S+")


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def site(settings):
    settings.SITE_URL = "https://tokenmgr.example.fr"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def _password_login(http, user) -> None:
    response = http.post(reverse("login"), {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302, response.content.decode()[:500]


def _reauth_url(next_url: str) -> str:
    return f"{reverse('reauth')}?{urlencode({'next': next_url})}"


def _local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _link_from_outbox() -> str:
    assert len(mail.outbox) == 1
    links = REAUTH_LINK_RE.findall(mail.outbox[0].body)
    assert len(links) == 1
    assert links[0].replace("&", "&amp;") in mail.outbox[0].alternatives[0][0]
    return _local(links[0])


def _linkless_member(client_) -> object:
    """An account opened by a reminder's magic link: no usable password."""
    user = get_user_model()(email="marie.curie@example.org")
    user.set_unusable_password()
    user.save()
    ClientMembershipFactory(client=client_, user=user)
    return user


# ---------------------------------------------------------------------------------------------------------------
# Expiry, password, throttling
# ---------------------------------------------------------------------------------------------------------------
def test_fresh_login_then_expiry_then_password(client, clock, member, own):
    revoke = reverse("portal_token_revoke", args=[own.token.public_id])
    _password_login(client, member)
    assert client.get(revoke).status_code == 200  # fresh login: allowed
    clock.shift(dt.timedelta(minutes=14))
    assert client.get(revoke).status_code == 200  # still within 15 minutes
    clock.shift(dt.timedelta(minutes=2))  # 16 minutes after the login
    response = client.get(revoke)
    assert response.status_code == 302 and response["Location"] == _reauth_url(revoke)
    page = client.get(response["Location"])
    assert page.status_code == 200 and page["Cache-Control"].startswith("no-store")
    assert 'name="password"' in page.content.decode() and 'id="reauth-link"' not in page.content.decode()
    # a wrong password is refused and changes nothing
    wrong = client.post(reverse("reauth"), {"password": "not the password", "next": revoke})
    assert wrong.status_code == 400 and "Mot de passe incorrect." in wrong.content.decode()
    assert client.get(revoke).status_code == 302
    # the right one restores the action, back where the user was going
    right = client.post(reverse("reauth"), {"password": PASSWORD, "next": revoke})
    assert right.status_code == 303 and right["Location"] == revoke
    response = client.post(revoke, {"reason": "Fuite", "confirm": "on"})
    assert response.status_code == 302
    own.token.refresh_from_db()
    assert own.token.revoked_at is not None
    # and it lasts REAUTH_MAX_AGE_SECONDS from the re-authentication
    clock.shift(dt.timedelta(minutes=16))
    assert client.post(reverse("portal_calendar"), {"action": "generate"}).status_code == 302
    assert not CalendarFeed.objects.exists()


def test_max_age_is_a_setting(client, clock, member, own, settings):
    settings.REAUTH_MAX_AGE_SECONDS = 60
    revoke = reverse("portal_token_revoke", args=[own.token.public_id])
    _password_login(client, member)
    clock.shift(dt.timedelta(seconds=61))
    assert client.get(revoke).status_code == 302


def test_next_must_be_local(client, clock, member):
    _password_login(client, member)
    clock.shift(dt.timedelta(minutes=16))
    response = client.post(reverse("reauth"), {"password": PASSWORD, "next": "https://evil.example/x"})
    assert response.status_code == 303 and response["Location"] == "/"


def test_password_form_is_throttled(client, clock, member, own):
    """Per-minute counters (tokenmgr.ratelimit) and the failed-password lock-out of every password form (axes)."""
    _password_login(client, member)
    clock.shift(dt.timedelta(minutes=16))
    for _ in range(pages.PASSWORD_PER_USER - 1):
        assert client.post(reverse("reauth"), {"password": "guess"}).status_code == 400
    client.post(reverse("reauth"), {"password": "guess"})
    refused = client.post(reverse("reauth"), {"password": PASSWORD})  # the right password included
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Trop de " in refused.content.decode()
    assert client.get(reverse("portal_token_revoke", args=[own.token.public_id])).status_code == 302
    clock.shift(dt.timedelta(minutes=16))  # the lock-out is over
    assert client.post(reverse("reauth"), {"password": PASSWORD}).status_code == 303


def test_per_minute_limit_of_the_password_form(client, clock, member, settings):
    settings.AXES_FAILURE_LIMIT = 1000  # the per-minute counters alone
    _password_login(client, member)
    clock.shift(dt.timedelta(minutes=16))
    for _ in range(pages.PASSWORD_PER_USER):
        assert client.post(reverse("reauth"), {"password": "guess"}).status_code == 400
    refused = client.post(reverse("reauth"), {"password": PASSWORD})
    assert refused.status_code == 429 and "Trop de tentatives" in refused.content.decode()
    clock.shift(dt.timedelta(minutes=1))  # next window
    assert client.post(reverse("reauth"), {"password": PASSWORD}).status_code == 303


def test_reauth_pages_need_a_signed_in_user(client):
    response = client.get(_reauth_url("/"))
    assert response.status_code == 302 and response["Location"].startswith("/connexion/?next=")


# ---------------------------------------------------------------------------------------------------------------
# Accounts without a password: a one-time link by email
# ---------------------------------------------------------------------------------------------------------------
def test_passwordless_account_gets_a_single_use_link(client, clock, site, own_client, own):
    user = _linkless_member(own_client)
    client.force_login(user, backend="sesame.backends.ModelBackend")
    revoke = reverse("portal_token_revoke", args=[own.token.public_id])
    response = client.get(revoke)
    assert response["Location"] == _reauth_url(revoke)
    page = client.get(response["Location"]).content.decode()
    assert 'id="reauth-link"' in page and 'name="password"' not in page
    sent = client.post(reverse("reauth"), {"next": revoke})
    assert sent.status_code == 200 and "Vérifiez votre messagerie" in sent.content.decode()
    link = _link_from_outbox()
    assert mail.outbox[0].to == [user.email]
    assert mail.outbox[0].body.count("tokenmgr.example.fr/reauth/lien/") == 1
    # GET: a confirmation only (mail scanners), nothing spent, still not re-authenticated
    confirm = client.get(link)
    assert confirm.status_code == 200 and confirm["Cache-Control"].startswith("no-store")
    assert client.get(link).status_code == 200
    assert client.get(revoke).status_code == 302
    token = parse_qs(urlsplit(link).query)["token"][0]
    clock.shift(dt.timedelta(minutes=1))  # sesame's single use rests on last_login changing
    # POST spends it and comes back to the action
    response = client.post(reverse("reauth_link"), {"token": token, "next": revoke})
    assert response.status_code == 303 and response["Location"] == revoke
    assert client.get(revoke).status_code == 200
    # single use
    assert client.get(link).status_code == 403
    assert client.post(reverse("reauth_link"), {"token": token, "next": revoke}).status_code == 403


def test_link_expires_after_15_minutes(client, clock, site, own_client):
    user = _linkless_member(own_client)
    client.force_login(user, backend="sesame.backends.ModelBackend")
    client.post(reverse("reauth"), {"next": "/"})
    link = _link_from_outbox()
    clock.shift(dt.timedelta(minutes=16))
    response = client.get(link)
    assert response.status_code == 403 and "plus valable" in response.content.decode()


def test_link_only_for_its_own_account(client, clock, site, own_client, member):
    user = _linkless_member(own_client)
    link_token = get_token(user, scope="reauth")
    client.force_login(member, backend="sesame.backends.ModelBackend")
    assert client.get(reverse("reauth_link"), {"token": link_token}).status_code == 403
    assert client.post(reverse("reauth_link"), {"token": link_token}).status_code == 403
    assert reauth.SESSION_KEY not in client.session
    # a login link (scope "login") or a reminder's link (scope token:<id>) is no re-authentication link
    client.force_login(user, backend="sesame.backends.ModelBackend")
    for scope in ("login", magic_link_scope(uuid.uuid4())):
        assert client.post(reverse("reauth_link"), {"token": get_token(user, scope=scope)}).status_code == 403
    assert reauth.SESSION_KEY not in client.session


def test_link_sending_is_throttled(client, clock, site, own_client):
    user = _linkless_member(own_client)
    client.force_login(user, backend="sesame.backends.ModelBackend")
    for _ in range(3):
        assert client.post(reverse("reauth"), {"next": "/"}).status_code == 200
    assert client.post(reverse("reauth"), {"next": "/"}).status_code == 429
    assert len(mail.outbox) == 3


# ---------------------------------------------------------------------------------------------------------------
# Which logins count
# ---------------------------------------------------------------------------------------------------------------
def _contact_token(user, client_):
    contact = ContactFactory(client=client_, email=user.email)
    return issue_token(client=client_, contacts=[contact]).token


def _reminder_link_login(http, token, user) -> None:
    user.refresh_from_db()  # the link is made from the account's current last_login (single use)
    sesame = get_token(user, scope=magic_link_scope(token.public_id))
    url = f"{reverse('token_renew', args=[token.public_id])}?sesame={sesame}"
    response = http.post(url)
    assert response.status_code == 303, response.content.decode()[:300]
    assert http.session[SESSION_CLIENT_KEY] == token.client_id


def test_a_reminder_link_session_never_counts(client, clock, member, own_client):
    token = _contact_token(member, own_client)
    _reminder_link_login(client, token, member)
    revoke = reverse("portal_token_revoke", args=[token.public_id])
    # A reminder-link session reaches that token's renewal only: a full sign-in is asked before anything else.
    assert client.get(revoke)["Location"].startswith(reverse("login") + "?next=")
    # even just after a password login in the same browser: the reminder link's login drops the proof
    other = Client()
    _password_login(other, member)
    assert other.get(revoke).status_code == 200
    clock.shift(dt.timedelta(minutes=1))
    _reminder_link_login(other, token, member)
    assert other.get(revoke)["Location"].startswith(reverse("login") + "?next=")
    assert reauth.SESSION_KEY not in other.session  # the reminder link's login dropped the proof


def test_a_login_link_asked_for_counts(
    client, clock, site, own_client, own, celery_eager, django_capture_on_commit_callbacks
):
    user = _linkless_member(own_client)
    with django_capture_on_commit_callbacks(execute=True):  # the email is sent by a task
        client.post(reverse("login_link_request"), {"email": user.email})
    assert len(mail.outbox) == 1
    link = re.search(r"https?://\S+/connexion/lien/\?\S+", mail.outbox[0].body).group(0)
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert client.post(reverse("login_link"), {"token": token}).status_code == 303
    assert client.get(reverse("portal_token_revoke", args=[own.token.public_id])).status_code == 200


# ---------------------------------------------------------------------------------------------------------------
# Every sensitive action is guarded
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def world(member, own_client, own):
    endpoint = WebhookEndpoint.objects.create(client=own_client, url="https://hooks.example.fr/a", secret="s")
    pending = issue_token(client=own_client, label="À récupérer").token
    Token.objects.filter(pk=pending.pk).update(pickup_pending_since=timezone.now())
    legacy = issue_token(client=own_client, origin="demarches_simplifiees").token
    return {
        "token": own.token,
        "pending": pending,
        "endpoint": endpoint,
        "client": own_client,
        "legacy": legacy,
    }


def _snapshot(world) -> tuple:
    return (
        TokenEvent.objects.filter(kind__in=["revealed", "regenerated"]).count(),
        Token.objects.filter(revoked_at__isnull=False).count(),
        WebhookEndpoint.objects.count(),
        WebhookEndpoint.objects.filter(pk=world["endpoint"].pk).values_list("secret", "disabled_at").first(),
        CalendarFeed.objects.count(),
        get_user_model().objects.filter(password__startswith="!").count(),
    )


# name -> (method, url, data, page the user comes back to after re-authenticating)
ACTIONS = {
    "reveal": lambda w: (
        "post",
        reverse("token_reveal", args=[w["pending"].public_id]),
        {},
        reverse("token_pickup", args=[w["pending"].public_id]),
    ),
    "regenerate": lambda w: (
        "post",
        reverse("token_regenerate", args=[w["token"].public_id]),
        {"confirm": "on", "reason": "perdu"},
        reverse("token_pickup", args=[w["token"].public_id]),
    ),
    "revoke_form": lambda w: (
        "get",
        reverse("portal_token_revoke", args=[w["token"].public_id]),
        {},
        reverse("portal_token_revoke", args=[w["token"].public_id]),
    ),
    "revoke": lambda w: (
        "post",
        reverse("portal_token_revoke", args=[w["token"].public_id]),
        {"reason": "Fuite", "confirm": "on"},
        reverse("portal_token_revoke", args=[w["token"].public_id]),
    ),
    "webhook_create": lambda w: (
        "post",
        reverse("portal_webhooks"),
        {"client": w["client"].pk, "url": "https://hooks.example.fr/b", "description": ""},
        reverse("portal_webhooks"),
    ),
    "webhook_rotate": lambda w: (
        "post",
        reverse("portal_webhook_action", args=[w["endpoint"].pk]),
        {"action": "rotate"},
        reverse("portal_webhook", args=[w["endpoint"].pk]),
    ),
    "webhook_disable": lambda w: (
        "post",
        reverse("portal_webhook_action", args=[w["endpoint"].pk]),
        {"action": "disable"},
        reverse("portal_webhook", args=[w["endpoint"].pk]),
    ),
    "webhook_delete": lambda w: (
        "post",
        reverse("portal_webhook_action", args=[w["endpoint"].pk]),
        {"action": "delete", "confirm": "on"},
        reverse("portal_webhook", args=[w["endpoint"].pk]),
    ),
    "calendar_key": lambda w: (
        "post",
        reverse("portal_calendar"),
        {"action": "generate"},
        reverse("portal_calendar"),
    ),
    "first_password_form": lambda w: (
        "get",
        reverse("token_legacy_renew", args=[w["legacy"].public_id]),
        {},
        reverse("token_legacy_renew", args=[w["legacy"].public_id]),
    ),
    "first_password": lambda w: (
        "post",
        reverse("token_legacy_renew", args=[w["legacy"].public_id]),
        {
            "step": "account",
            "first_name": "M",
            "last_name": "C",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
        reverse("token_legacy_renew", args=[w["legacy"].public_id]),
    ),
}


def _actor(world, name):
    if name.startswith("first_password"):
        return _linkless_member(world["client"])
    return world["client"].members.get()


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_every_sensitive_action_needs_a_recent_authentication(client, clock, world, name, recent_auth):
    method, url, data, back_to = ACTIONS[name](world)
    user = _actor(world, name)
    client.force_login(user, backend="sesame.backends.ModelBackend")  # signed in, but not recently proved
    before = _snapshot(world)
    response = getattr(client, method)(url, data)
    assert response.status_code == 302 and response["Location"] == _reauth_url(back_to), name
    assert _snapshot(world) == before  # nothing done, and a POST is never replayed
    # once re-authenticated, the same request goes through
    recent_auth(client)
    response = getattr(client, method)(url, data)
    assert not response.get("Location", "").startswith(reverse("reauth")), name
    assert response.status_code in (200, 302), name
    if method == "post":
        assert _snapshot(world) != before, name


def test_harmless_requests_stay_open(client, clock, world):
    """Looking at the pages, a test event and revoking a calendar address need no re-authentication."""
    client.force_login(world["client"].members.get(), backend="sesame.backends.ModelBackend")
    for name in ("portal_webhooks", "portal_calendar"):
        assert client.get(reverse(name)).status_code == 200
    assert client.get(reverse("portal_webhook", args=[world["endpoint"].pk])).status_code == 200
    assert client.get(reverse("token_pickup", args=[world["token"].public_id])).status_code == 200
    ping = client.post(reverse("portal_webhook_action", args=[world["endpoint"].pk]), {"action": "ping"})
    assert ping["Location"] == reverse("portal_webhook", args=[world["endpoint"].pk])
    assert client.post(reverse("portal_calendar"), {"action": "revoke"})["Location"] == reverse(
        "portal_calendar"
    )


def test_reauth_on_a_post_tells_the_user_to_start_again(client, clock, world):
    client.force_login(world["client"].members.get(), backend="sesame.backends.ModelBackend")
    response = client.post(reverse("portal_calendar"), {"action": "generate"}, follow=True)
    assert response.redirect_chain[-1][0] == _reauth_url(reverse("portal_calendar"))
    assert "recommencez votre action" in response.content.decode()


def test_other_users_are_not_affected_by_a_stamp(clock, world):
    """The proof belongs to a session: another browser of the same user is not re-authenticated by it."""
    user = world["client"].members.get()
    first, second = Client(), Client()
    first.force_login(user, backend="sesame.backends.ModelBackend")
    second.force_login(user, backend="sesame.backends.ModelBackend")
    first.post(reverse("reauth"), {"password": PASSWORD, "next": "/"})
    revoke = reverse("portal_token_revoke", args=[world["token"].public_id])
    assert first.get(revoke).status_code == 200
    assert second.get(revoke).status_code == 302


def test_migration_landing_stays_open_to_anonymous_visitors(client, world):
    other = ClientFactory()
    legacy = issue_token(client=other, origin="demarches_simplifiees").token
    response = client.get(reverse("token_legacy_renew", args=[legacy.public_id]))
    assert response.status_code == 200
    # a member with a password goes straight to the request form
    client.force_login(world["client"].members.get())
    response = client.get(reverse("token_legacy_renew", args=[world["legacy"].public_id]))
    assert response.status_code == 200


def test_an_admin_password_login_counts_too(client, clock, own_client, own):
    staff = get_user_model().objects.create_user(
        email="staff@tokenmgr.example", password=PASSWORD, is_staff=True
    )
    ClientMembershipFactory(client=own_client, user=staff)
    response = client.post(
        reverse("admin:login"), {"username": staff.email, "password": PASSWORD, "next": "/admin/"}
    )
    assert response.status_code == 302 and reauth.SESSION_KEY in client.session
    assert client.get(reverse("portal_token_revoke", args=[own.token.public_id])).status_code == 200

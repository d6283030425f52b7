import datetime as dt
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import time_machine
from django.urls import reverse
from django.utils import formats, timezone

from notifications import webhooks
from notifications.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from notifications.opt_outs import token_reminders_decline
from notifications.tasks import webhooks_emit_expired
from portal import ics
from portal.models import CalendarFeed
from portal.selectors import next_reminder, reminder_plan
from tests.factories import issue_token
from tokens.models import Token

pytestmark = pytest.mark.django_db


# ------------------------------------------------------------------------------------------------ check a token
def test_verify_requires_login(client):
    assert client.get(reverse("portal_verify")).status_code == 302


def test_verify_own_token_shows_details_and_never_echoes_secret(logged, own, caplog):
    response = logged.post(reverse("portal_verify"), {"secret": own.secret})
    body = response.content.decode()
    assert response.status_code == 200
    assert "Jeton valide" in body and "entreprises" in body and "Portail des aides" in body
    assert own.secret not in body
    assert own.secret not in caplog.text
    own.token.refresh_from_db()
    assert own.token.last_used_at is None  # a check alone records no use


def test_verify_foreign_token_shows_validity_only(logged, foreign):
    body = logged.post(reverse("portal_verify"), {"secret": foreign.secret}).content.decode()
    assert "Jeton valide" in body and "entreprises" in body
    assert foreign.token.client.name not in body
    assert "aucun de vos clients" in body


def test_verify_superseded_token_names_its_successor(logged, own, own_client, foreign):
    from tokens.services import token_supersede

    successor = issue_token(client=own_client, label="Nouveau portail")
    token_supersede(old=own.token, new=successor.token, by=None)
    body = logged.post(reverse("portal_verify"), {"secret": own.secret}).content.decode()
    assert "Jeton remplacé" in body and "Jeton valide" not in body
    assert "Nouveau portail" in body and f"{successor.token.secret_prefix}…" in body
    assert reverse("portal_token", args=[successor.token.public_id]) in body
    day = formats.date_format(timezone.localtime(own.token.expires_at), "DATE_FORMAT")
    assert f"fonctionne encore jusqu&#x27;au {day}" in body or f"fonctionne encore jusqu'au {day}" in body
    # a foreign token's successor is not described
    other = issue_token(client=foreign.token.client, label="Successeur étranger")
    token_supersede(old=foreign.token, new=other.token, by=None)
    body = logged.post(reverse("portal_verify"), {"secret": foreign.secret}).content.decode()
    assert "Jeton remplacé" in body and "remplacé par un nouveau jeton" in body
    assert "Successeur étranger" not in body and other.token.secret_prefix not in body


def test_verify_unknown_revoked_and_empty(logged, own):
    body = logged.post(reverse("portal_verify"), {"secret": "tkm_nope"}).content.decode()
    assert "pas reconnu" in body
    Token.objects.filter(pk=own.token.pk).update(revoked_at=timezone.now())
    body = logged.post(reverse("portal_verify"), {"secret": own.secret}).content.decode()
    assert "révoqué" in body
    response = logged.post(reverse("portal_verify"), {"secret": ""})
    assert "fr-input-group--error" in response.content.decode()


@time_machine.travel(dt.datetime(2026, 3, 10, 9, 0, 5, tzinfo=dt.UTC), tick=False)
def test_verify_is_rate_limited(logged, own, settings):
    settings.RATELIMIT_VERIFY_PER_USER = 2
    for _ in range(2):
        assert logged.post(reverse("portal_verify"), {"secret": "tkm_x"}).status_code == 200
    response = logged.post(reverse("portal_verify"), {"secret": "tkm_x"})
    assert response.status_code == 429
    assert "Retry-After" in response


# ------------------------------------------------------------------------------------------------ calendar
def test_calendar_key_lifecycle_and_feed(logged, member, own):
    from django.test import Client

    client = Client()  # anonymous, like a calendar application
    response = logged.post(reverse("portal_calendar"), {"action": "generate"})
    body = response.content.decode()
    assert response.status_code == 200
    url = body.split('id="ics-url" type="text" readonly value="')[1].split('"')[0]
    path = url.split("testserver")[1]
    key = path.split("/calendrier/")[1].removesuffix(".ics")
    feed = CalendarFeed.objects.get(user=member)
    assert feed.key_digest == hashlib.sha256(key.encode()).hexdigest() and key not in feed.key_digest
    # shown once only
    assert key not in logged.get(reverse("portal_calendar")).content.decode()

    ics_response = client.get(path)
    assert ics_response.status_code == 200
    assert ics_response["Content-Type"].startswith("text/calendar")
    text = ics_response.content.decode()
    assert text.startswith("BEGIN:VCALENDAR\r\n") and text.endswith("END:VCALENDAR\r\n")
    assert f"UID:{own.token.public_id}-expiry@testserver" in text
    assert text.count("BEGIN:VEVENT") == 5  # expiry + 4 reminders
    expiry = own.token.expires_at.astimezone(dt.timezone(dt.timedelta(hours=1))).date()
    assert "DTSTART;VALUE=DATE:" in text
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    assert expiry.year >= 2026

    # regenerate: the old key stops working
    logged.post(reverse("portal_calendar"), {"action": "generate"})
    assert client.get(path).status_code == 404
    logged.post(reverse("portal_calendar"), {"action": "revoke"})
    assert not CalendarFeed.objects.filter(user=member).exists()
    assert client.get("/calendrier/guess.ics").status_code == 404


def test_ics_escaping_and_folding():
    assert ics.escape_text("a,b;c\\d\ne") == "a\\,b\\;c\\\\d\\ne"
    line = "SUMMARY:" + "é" * 80
    folded = ics.fold(line)
    assert all(len(part.encode()) <= 75 for part in folded.split("\r\n"))
    assert folded.replace("\r\n ", "") == line


def test_ics_feed_only_lists_own_tokens(own, foreign, member):
    from portal.services import calendar_feed_for_key, calendar_feed_regenerate

    key = calendar_feed_regenerate(user=member)
    feed = calendar_feed_for_key(key=key)
    assert feed.user == member
    text = ics.calendar_for_tokens(Token.objects.for_user(member), host="h")
    assert str(own.token.public_id) in text and str(foreign.token.public_id) not in text


# ------------------------------------------------------------------------------------------------ reminders plan
def test_reminder_plan_with_ledger(own, settings):
    from notifications.models import Reminder

    token = own.token
    expiry_day = token.expires_at.astimezone(dt.UTC).date()
    today = expiry_day - dt.timedelta(days=70)
    Reminder.objects.create(
        token=token,
        threshold=90,
        expires_at=token.expires_at,
        route="api_gouv",
        status="sent",
        sent_at=timezone.now(),
        recipients=["a@example.org"],
    )
    steps = reminder_plan(token, list(Reminder.objects.filter(token=token)), today=today)
    states = {s.threshold: s.state for s in steps}
    assert states == {90: "sent", 60: "planned", 30: "planned", 15: "planned"}
    nxt = next_reminder(steps)
    assert nxt.threshold == 60
    # missed days: tightest due today
    late = reminder_plan(token, [], today=expiry_day - dt.timedelta(days=45))
    assert {s.threshold: s.state for s in late}[60] == "due"
    # declined: nothing planned
    assert next_reminder(reminder_plan(token, [], today=today, declined=True)) is None


def test_token_page_lists_sent_reminders(logged, own):
    from notifications.models import Reminder

    Reminder.objects.create(
        token=own.token,
        threshold=90,
        expires_at=own.token.expires_at,
        route="api_gouv",
        status="sent",
        sent_at=timezone.now(),
        recipients=["alice@example.org", "bob@example.org"],
    )
    body = logged.get(reverse("portal_token", args=[own.token.public_id])).content.decode()
    assert "alice@example.org, bob@example.org" in body and "J-90" in body


def test_declined_helper(own):
    from notifications.rules import eligible_tokens, reminders_declined_token_ids

    token_reminders_decline(token=own.token, by=None)
    assert reminders_declined_token_ids([own.token.pk]) == {own.token.pk}
    assert not eligible_tokens(Token.objects.filter(pk=own.token.pk)).exists()


# ------------------------------------------------------------------------------------------------ webhooks
class _Receiver:
    """A real HTTP server on 127.0.0.1 recording requests; answers the queued status codes."""

    def __init__(self, codes=(200,)):
        self.codes = list(codes)
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    r = _Receiver()
    yield r
    r.close()


def test_webhook_url_rules(settings):
    from django.core.exceptions import ValidationError

    settings.WEBHOOK_ALLOW_LOOPBACK = False
    for bad in [
        "http://example.fr/hook",
        "https://user:pass@example.fr/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://localhost/hook",
        "ftp://example.fr/",
    ]:
        with pytest.raises(ValidationError):
            webhooks.validate_webhook_url(bad)
    webhooks.validate_webhook_url("https://hooks.example.fr/tokenmgr?x=1")


def test_register_webhook_shows_secret_once(logged, own_client, settings):
    response = logged.post(
        reverse("portal_webhooks"),
        {"client": own_client.pk, "url": "https://hooks.example.fr/t", "description": ""},
    )
    body = response.content.decode()
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret in body
    assert endpoint.secret not in logged.get(reverse("portal_webhooks")).content.decode()
    assert endpoint.secret not in logged.get(reverse("portal_webhook", args=[endpoint.pk])).content.decode()
    bad = logged.post(
        reverse("portal_webhooks"), {"client": own_client.pk, "url": "http://hooks.example.fr/t"}
    )
    assert "https://" in bad.content.decode() and "fr-input-group--error" in bad.content.decode()


def test_webhook_other_client_404(logged, foreign):
    endpoint = WebhookEndpoint.objects.create(
        client=foreign.token.client, url="https://x.example.fr", secret="s"
    )
    assert logged.get(reverse("portal_webhook", args=[endpoint.pk])).status_code == 404
    assert (
        logged.post(reverse("portal_webhook_action", args=[endpoint.pk]), {"action": "disable"}).status_code
        == 404
    )
    bad = logged.post(
        reverse("portal_webhooks"), {"client": foreign.token.client.pk, "url": "https://x.example.fr"}
    )
    assert bad.status_code == 200 and WebhookEndpoint.objects.count() == 1


def test_revocation_delivers_signed_event(
    logged, own, own_client, receiver, django_capture_on_commit_callbacks, _no_broker
):
    endpoint, secret = __import__("notifications.webhooks", fromlist=["x"]).webhook_endpoint_register(
        client=own_client, url=receiver.url, by=None
    )
    with django_capture_on_commit_callbacks(execute=True):
        logged.post(
            reverse("portal_token_revoke", args=[own.token.public_id]), {"reason": "fuite", "confirm": "on"}
        )
    event = WebhookEvent.objects.get(type="token.revoked")
    delivery = WebhookDelivery.objects.get(event=event)
    assert _no_broker == [delivery.pk]
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk) == "delivered"
    headers, body = receiver.requests[0]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Signature-256"] == expected
    assert headers["X-Webhook-Id"] == str(event.id)
    document = json.loads(body)
    assert document["id"] == str(event.id) and document["type"] == "token.revoked"
    assert (
        document["data"]["token"]["id"] == str(own.token.public_id) and document["data"]["reason"] == "fuite"
    )
    assert own.secret not in body.decode()
    # a second run does nothing
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk) is None
    assert len(receiver.requests) == 1


def test_failed_delivery_backs_off_then_fails_and_replays(own_client, receiver, settings, _no_broker):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    receiver.codes = [500, 503, 502]
    from notifications.webhooks import webhook_endpoint_register

    webhook_endpoint_register(client=own_client, url=receiver.url, by=None)
    event = webhooks.webhook_emit(client=own_client, event_type="ping", payload={})
    delivery = event.deliveries.get()
    now = timezone.now()
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, now=now) == "pending"
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == now + dt.timedelta(seconds=settings.WEBHOOK_BACKOFF_BASE_SECONDS)
    # not due yet: nothing is sent
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, now=now) is None
    now = delivery.next_attempt_at
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, now=now) == "pending"
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == now + dt.timedelta(seconds=2 * settings.WEBHOOK_BACKOFF_BASE_SECONDS)
    now = delivery.next_attempt_at
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, now=now) == "failed"
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 3
    assert [r[0]["X-Webhook-Id"] for r in receiver.requests] == [str(event.id)] * 3
    webhooks.webhook_delivery_replay(delivery=delivery)
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk) == "delivered"


def test_unreachable_endpoint_is_a_logged_attempt(own_client, settings, _no_broker):
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    WebhookEndpoint.objects.create(client=own_client, url="http://127.0.0.1:9/closed", secret="s")
    event = webhooks.webhook_emit(client=own_client, event_type="ping", payload={})
    delivery = event.deliveries.get()
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk) == "pending"
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.status_code is None and attempt.error
    assert attempt.cause == WebhookAttempt.Cause.REFUSED and attempt.cause_label == "connexion refusée"


def test_no_webhook_no_event(own_client):
    assert webhooks.webhook_emit(client=own_client, event_type="ping", payload={}) is None
    with pytest.raises(ValueError):
        webhooks.webhook_emit(client=own_client, event_type="nope", payload={})


def test_expired_task_emits_once(own_client, settings):
    WebhookEndpoint.objects.create(client=own_client, url="https://x.example.fr", secret="s")
    token = issue_token(client=own_client).token
    with time_machine.travel(token.expires_at + dt.timedelta(hours=30), tick=False):
        assert webhooks_emit_expired() == 1
        assert webhooks_emit_expired() == 0
    assert WebhookEvent.objects.filter(type="token.expired").count() == 1


def test_ping_from_page(logged, own_client, _no_broker):
    endpoint = WebhookEndpoint.objects.create(client=own_client, url="https://x.example.fr", secret="s")
    other = WebhookEndpoint.objects.create(client=own_client, url="https://y.example.fr", secret="s")
    logged.post(reverse("portal_webhook_action", args=[endpoint.pk]), {"action": "ping"})
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1
    assert not WebhookDelivery.objects.filter(endpoint=other).exists()
    body = logged.get(reverse("portal_webhook", args=[endpoint.pk])).content.decode()
    assert "ping" in body

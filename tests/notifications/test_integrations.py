"""Reminders meet the rest of the house: declined renewals, webhooks, the sweep record read by /healthz."""

import pytest
from django.contrib.auth import get_user_model

from notifications import delivery, sweep
from notifications.models import Reminder, ReminderStatus, SweepRun, WebhookEndpoint, WebhookEvent
from notifications.opt_outs import token_reminders_decline
from notifications.selectors import last_sweep_at
from tests.factories import issue_token
from tokens.services import token_revoke


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr("notifications.webhooks.enqueue_delivery", lambda delivery_id, countdown=0: None)


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("holder@example.org")


def hook(client):
    return WebhookEndpoint.objects.create(client=client, url="https://hooks.example.org/in", secret="s" * 32)


def test_declined_tokens_are_not_swept(token_factory, today, user):
    declined = token_factory(30).token
    kept = token_factory(30).token
    token_reminders_decline(token=declined, by=user)
    sweep.reminders_sweep(today=today)
    assert list(Reminder.objects.values_list("token_id", flat=True)) == [kept.pk]


def test_pending_reminder_of_a_token_declined_before_delivery_is_cancelled(token_factory, today, user):
    token = token_factory(15).token
    sweep.reminders_sweep(today=today)
    token_reminders_decline(token=token, by=user)
    result = delivery.reminders_deliver()
    assert (result.sent, result.skipped) == (0, 1)
    assert Reminder.objects.get().status == ReminderStatus.CANCELLED


def test_sent_reminder_emits_a_webhook_event_for_clients_with_webhooks(token_factory, today):
    hooked = token_factory(60, contacts=3).token
    token_factory(60)  # a client without webhook: no event
    hook(hooked.client)
    sweep.reminders_sweep(today=today)
    assert delivery.reminders_deliver(batch_size=2).sent == 4
    delivery.reminders_deliver()
    # Once per reminder, not per message.
    (event,) = WebhookEvent.objects.all()
    assert event.type == "token.reminder_sent" and event.client == hooked.client
    assert event.payload["threshold"] == 60 and event.payload["token"]["id"] == str(hooked.public_id)
    assert "secret" not in str(event.payload).lower() or "secret_" not in str(event.payload)


def test_revocation_from_anywhere_emits_a_webhook_event(db, user):
    issued = issue_token()
    hook(issued.token.client)
    token_revoke(token=issued.token, by=user, reason="fuite")
    (event,) = WebhookEvent.objects.all()
    assert event.type == "token.revoked" and event.payload["reason"] == "fuite"
    assert issued.secret not in str(event.payload)


def test_renewal_emits_renewal_validated(db, user):
    old = issue_token()
    hook(old.token.client)
    new = issue_token(client=old.token.client)
    from tokens.services import token_supersede

    token_supersede(old=old.token, new=new.token, by=user)
    (event,) = WebhookEvent.objects.all()
    assert event.type == "token.renewal_validated"
    assert event.payload["new_token"]["id"] == str(new.token.public_id)
    assert old.secret not in str(event.payload) and new.secret not in str(event.payload)


def test_each_sweep_is_recorded_for_health(token_factory, today):
    assert last_sweep_at() is None
    sweep.reminders_sweep(today=today)
    run = SweepRun.objects.get()
    assert run.day == today and last_sweep_at() == run.finished_at


def test_magic_link_pages_keep_the_referrer_on_our_origin(client, db):
    from django.http import HttpResponse

    from tokenmgr.pages import private

    assert private(HttpResponse())["Referrer-Policy"] == "same-origin"

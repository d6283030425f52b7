"""Reminders and webhooks deliver through the one tokenmgr.outbox mechanism: no second copy can drift."""

import datetime as dt

import pytest
from django.conf import settings

from notifications import delivery, sweep, webhooks
from notifications.models import ReminderMessage, WebhookDelivery, WebhookEndpoint
from tokenmgr import outbox


@pytest.fixture
def spy(monkeypatch):
    """Records every Outbox claim / settle / release (by model) and every backoff computed, then runs them."""
    calls = []
    for name in ("claim", "settle", "release"):
        real = getattr(outbox.Outbox, name)

        def wrapper(self, *args, _real=real, _name=name, **kwargs):
            calls.append((_name, self.model))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(outbox.Outbox, name, wrapper)
    real_backoff = outbox.backoff

    def backoff(attempts, **kwargs):
        calls.append(("backoff", kwargs["base"]))
        return real_backoff(attempts, **kwargs)

    monkeypatch.setattr(outbox, "backoff", backoff)
    return calls


def test_both_outboxes_claim_settle_and_back_off_through_tokenmgr_outbox(
    token_factory, today, spy, monkeypatch
):
    token = token_factory(30).token
    sweep.reminders_sweep(today=today)

    def refused(conn, message):
        raise OSError("refused")

    monkeypatch.setattr(delivery, "send", refused)
    assert delivery.reminders_deliver().failed == 1

    WebhookEndpoint.objects.create(
        client=token.client, url="https://hooks.example.fr/in", secret="whsec_test"
    )
    monkeypatch.setattr(webhooks, "enqueue_delivery", lambda delivery_id, countdown=0: None)
    monkeypatch.setattr(webhooks, "post", lambda *a, **k: 503)
    event = webhooks.webhook_emit(client=token.client, event_type="ping", payload={"message": "ping"})
    assert webhooks.webhook_delivery_attempt(delivery_id=event.deliveries.get().pk) == "pending"

    assert ("claim", ReminderMessage) in spy and ("settle", ReminderMessage) in spy
    assert ("claim", WebhookDelivery) in spy and ("settle", WebhookDelivery) in spy
    assert ("backoff", settings.REMINDER_RETRY_BASE_SECONDS) in spy
    assert ("backoff", settings.WEBHOOK_BACKOFF_BASE_SECONDS) in spy


def test_reminder_retry_delay_is_the_shared_backoff(settings):
    settings.REMINDER_RETRY_BASE_SECONDS, settings.REMINDER_RETRY_FACTOR = 60, 5
    settings.REMINDER_RETRY_MAX_SECONDS = 1000
    expected = [outbox.backoff(n, base=60, factor=5, cap=1000) for n in (1, 2, 3, 4)]
    assert [delivery.retry_delay(n) for n in (1, 2, 3, 4)] == expected
    assert expected[-1] == dt.timedelta(seconds=1000)


def test_the_reminder_outbox_is_a_tokenmgr_outbox_with_the_reminder_lease(settings):
    settings.REMINDER_LEASE_SECONDS = 123
    assert isinstance(delivery.OUTBOX, outbox.Outbox) and isinstance(webhooks.OUTBOX, outbox.Outbox)
    assert delivery.OUTBOX.model is ReminderMessage and delivery.OUTBOX.lease_seconds() == 123

"""Reminders and webhooks deliver through the one tokenmgr.outbox mechanism, and every email outbox (reminders,
evolution notices, exposure alerts, deadline alerts) through the one loop of notifications.mailer on tables of the
one abstract model: no second copy can drift."""

import datetime as dt

import pytest
from django.conf import settings

from evolutions import services as evolution_services
from evolutions.models import EvolutionNotice
from notifications import delivery, exposure, mailer, pending, sweep, webhooks
from notifications.models import (
    DeadlineAlertMessage,
    ExposureAlert,
    ReminderMessage,
    WebhookDelivery,
    WebhookEndpoint,
)
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

    monkeypatch.setattr(mailer, "send", refused)
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
    assert [mailer.retry_delay(n) for n in (1, 2, 3, 4)] == expected
    assert expected[-1] == dt.timedelta(seconds=1000)


def test_the_reminder_outbox_is_a_tokenmgr_outbox_with_the_reminder_lease(settings):
    settings.REMINDER_LEASE_SECONDS = 123
    assert isinstance(delivery.OUTBOX, outbox.Outbox) and isinstance(webhooks.OUTBOX, outbox.Outbox)
    assert delivery.OUTBOX.model is ReminderMessage and delivery.OUTBOX.lease_seconds() == 123


EMAIL_OUTBOXES = (ReminderMessage, EvolutionNotice, ExposureAlert, DeadlineAlertMessage)


@pytest.mark.django_db
def test_every_email_outbox_delivers_through_the_one_loop(monkeypatch):
    """Each kind's deliver function runs notifications.mailer.deliver (which claims through mailer.claim): a kind
    with a loop of its own would not show up here."""
    claimed = []

    def spy(kind, **kwargs):
        claimed.append(kind.model)
        return []

    monkeypatch.setattr(mailer, "claim", spy)
    delivery.reminders_deliver()
    evolution_services.evolution_notices_deliver()
    exposure.exposure_alerts_deliver()
    pending.deadline_alerts_send()
    assert claimed == list(EMAIL_OUTBOXES)
    for module, model in ((delivery, ReminderMessage), (evolution_services, EvolutionNotice)):
        assert module.OUTBOX is module.KIND.outbox and module.KIND.outbox.model is model
    assert exposure.KIND.model is ExposureAlert and pending.KIND.model is DeadlineAlertMessage


@pytest.mark.parametrize("model", EMAIL_OUTBOXES)
def test_every_email_outbox_table_has_the_outbox_fields_and_indexes_of_the_one_abstract_model(model):
    assert issubclass(model, outbox.OutboxMessage)
    for field in outbox.OutboxMessage._meta.fields:
        assert model._meta.get_field(field.name).deconstruct()[1:] == field.deconstruct()[1:]
    claim_indexes = [(i.fields, i.condition) for i in model._meta.indexes]
    assert claim_indexes == [(i.fields, i.condition) for i in outbox.outbox_indexes(pending="p", sending="s")]
    assert model._meta.get_field("status").choices == outbox.OutboxStatus.choices

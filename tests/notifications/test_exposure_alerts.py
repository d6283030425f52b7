"""Exposure alerts go through the outbox: an SMTP failure is retried with backoff, a message is sent once."""

import datetime as dt
import smtplib

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from notifications.exposure import exposure_alerts_deliver
from notifications.models import ExposureAlert, ReminderStatus
from tests.factories import ClientFactory, ContactFactory, issue_token
from tokens.exposure import token_exposure_record

pytestmark = pytest.mark.django_db


class RefusingBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("down")


@pytest.fixture
def alerted(settings):
    settings.EXPOSED_TOKEN_POLICY = "revoke"
    client = ClientFactory()
    contacts = [ContactFactory(client=client, email=f"c{i}@example.org") for i in range(2)]
    issued = issue_token(client=client, contacts=contacts)
    token_exposure_record(token=issued.token, url="https://example.org/leak", source="test")
    return issued


def test_a_failed_send_is_retried_then_sent_once(alerted, settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    result = exposure_alerts_deliver()
    assert (result.sent, result.failed) == (0, 2)
    alerts = list(ExposureAlert.objects.filter(token=alerted.token))
    assert {a.status for a in alerts} == {ReminderStatus.PENDING}
    assert all(
        a.attempts == 1 and a.next_attempt_at > timezone.now() and "down" in a.last_error for a in alerts
    )
    assert exposure_alerts_deliver().sent == 0  # not due yet

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    later = timezone.now() + dt.timedelta(hours=1)
    assert exposure_alerts_deliver(now=later).sent == 2
    assert exposure_alerts_deliver(now=later + dt.timedelta(hours=1)).sent == 0
    assert sorted(m.to[0] for m in mail.outbox) == ["c0@example.org", "c1@example.org"]
    assert all(m.extra_headers["Message-ID"].startswith("<exposure.") for m in mail.outbox)
    assert set(ExposureAlert.objects.values_list("status", flat=True)) == {ReminderStatus.SENT}


def test_a_token_without_contacts_alerts_the_admins(settings):
    settings.ADMINS = [("Admin", "Admin@Example.gouv.fr")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    issued = issue_token(contacts=0)
    token_exposure_record(token=issued.token, url="", source="test")
    assert exposure_alerts_deliver().sent == 1
    (alert,) = ExposureAlert.objects.all()
    assert alert.to_admins and mail.outbox[0].to == [alert.email]

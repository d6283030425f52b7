"""Delivery: one message per recipient, email content and headers, failures with backoff, the command, the check,
the admin."""

import datetime as dt
import smtplib

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.identity import InvalidEmail
from notifications import checks, delivery, mailer, requeue, sweep
from notifications.models import Reminder, ReminderMessage, ReminderStatus
from tests.factories import ClientFactory, ContactFactory, UserFactory
from tokenmgr.celery import app as celery_app
from tokens.models import Contact

from .conftest import at

ROUTE_PATHS = {"api_gouv": "/jetons/{}/renouveler/", "demarches_simplifiees": "/migration/{}/"}


class RefusingBackend(BaseEmailBackend):
    def open(self):
        raise ConnectionRefusedError(111, "Connection refused")

    def send_messages(self, messages):
        raise smtplib.SMTPServerDisconnected("down")


def deliver_one(token_factory, today, days_left, **kwargs):
    issued = token_factory(days_left, **kwargs)
    sweep.reminders_sweep(today=today)
    result = delivery.reminders_deliver()
    return issued, result


def text_of(message) -> str:
    return message.body + "".join(content for content, _ in message.alternatives)


# -- recipients -------------------------------------------------------------------------------------------------------
def test_one_message_per_recipient_deduplicated_by_normalized_address(token_factory, today):
    client = ClientFactory()
    contacts = [
        ContactFactory(client=client, email="bob@example.org", role=Contact.Role.BUSINESS),
        ContactFactory(client=client, email="Alice@Example.org", role=Contact.Role.REQUESTER),
        ContactFactory(client=client, email="alice@example.ORG ", role=Contact.Role.TECHNICAL),
    ]
    with pytest.raises(InvalidEmail):  # an address that cannot be normalized is never stored
        ContactFactory(client=client, email="not an address", role=Contact.Role.TECHNICAL)
    issued, result = deliver_one(token_factory, today, 30, client=client, contacts=contacts)
    assert result.sent == 2
    # Requester first, each address once in its normalized form, each in a message of its own.
    assert [m.to for m in mail.outbox] == [["alice@example.org"], ["bob@example.org"]]
    assert all(m.cc == [] and m.bcc == [] and m.reply_to == [] for m in mail.outbox)
    reminder = Reminder.objects.get()
    assert reminder.recipients == ["alice@example.org", "bob@example.org"]
    assert reminder.status == ReminderStatus.SENT and reminder.sent_at is not None
    assert sorted(reminder.messages.values_list("email", "status")) == [
        ("alice@example.org", "sent"),
        ("bob@example.org", "sent"),
    ]


def test_look_alike_addresses_are_different_recipients(token_factory, today):
    client = ClientFactory()
    R, T, B = Contact.Role.REQUESTER, Contact.Role.TECHNICAL, Contact.Role.BUSINESS
    look_alikes = [
        ("jose@example.org", R),
        ("Jose@EXAMPLE.org", T),  # ASCII case only: the same person
        ("jose@exаmple.org", T),  # Cyrillic а: another domain (xn--), another person
        ("jose@exémple.org", T),
        ("jose@EXéMPLE.org", B),  # the same as the previous one, ASCII case aside
    ]
    with pytest.raises(
        InvalidEmail
    ):  # É is no IDNA 2008 letter (no case mapping): not an address, never stored
        ContactFactory(client=client, email="jose@exÉmple.org", role=R)
    contacts = [ContactFactory(client=client, email=email, role=role) for email, role in look_alikes]
    issued, result = deliver_one(token_factory, today, 30, client=client, contacts=contacts)
    assert result.sent == 3
    assert sorted(m.to[0] for m in mail.outbox) == [
        "jose@example.org",
        "jose@xn--exmple-4nf.org",
        "jose@xn--exmple-cva.org",
    ]
    assert all(len(m.to) == 1 for m in mail.outbox)


def test_no_contact_goes_to_admins_with_a_note(token_factory, today):
    issued, result = deliver_one(token_factory, today, 30, contacts=0)
    (message,) = mail.outbox
    assert message.to == ["admin@example.gouv.fr"]
    assert "aucun contact joignable" in message.body
    assert "aucun contact joignable" in message.alternatives[0][0]
    assert "sesame=" not in text_of(message)  # admins get the plain link, no login as a contact


def test_no_contact_and_no_admins_is_failed_not_dropped(token_factory, today, settings):
    settings.ADMINS = []
    issued, result = deliver_one(token_factory, today, 30, contacts=0)
    assert mail.outbox == []
    reminder = Reminder.objects.get()
    assert reminder.status == ReminderStatus.FAILED and "ADMINS" in reminder.last_error


# -- content ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["api_gouv", "demarches_simplifiees"])
@pytest.mark.parametrize("threshold", [90, 60, 30, 15])
def test_email_for_every_threshold_and_route(token_factory, today, route, threshold):
    issued, result = deliver_one(token_factory, today, threshold, origin=route, label="Jeton marchés publics")
    token = issued.token
    (message,) = mail.outbox
    assert message.extra_headers["X-Reminder-Threshold"] == str(threshold)
    assert message.extra_headers["X-Reminder-Route"] == route
    assert message.extra_headers["X-Token-Id"] == str(token.public_id)
    assert message.message()["Message-ID"] == ReminderMessage.objects.get().message_id
    html = message.alternatives[0]
    assert html[1] == "text/html"
    expiry = today + dt.timedelta(days=threshold)
    months = {3: "mars", 4: "avril", 5: "mai", 6: "juin", 7: "juillet"}
    french_date = f"{expiry.day} {months[expiry.month]} {expiry.year}"
    path = ROUTE_PATHS[route].format(token.public_id)
    for part in (message.body, html[0]):
        assert french_date in part
        assert f"{threshold} jours" in part
        assert token.client.name in part
        assert "Jeton marchés publics" in part
        assert token.secret_prefix in part
        assert "entreprises" in part and "etablissements" in part
        assert f"https://jetons.example.gouv.fr{path}" in part
    assert french_date in message.subject and "Jeton marchés publics" in message.subject
    if route == "api_gouv":
        assert "pré-rempli" in message.body
    else:
        assert "demarches-simplifiees.fr" in message.body and "n'est plus utilisée" in message.body
        assert "nouvelle demande" in message.body


def test_the_two_routes_link_to_different_paths(token_factory, today):
    a = token_factory(30, origin="api_gouv").token
    b = token_factory(30, origin="demarches_simplifiees").token
    assert (
        reverse("token_renew", kwargs={"public_id": a.public_id}).rsplit("/", 3)[0]
        != reverse("token_legacy_renew", kwargs={"public_id": b.public_id}).rsplit("/", 3)[0]
    )


def test_no_secret_in_any_email(db, settings):
    from tests.notifications.conftest import make_token

    day = dt.date(2026, 5, 4)
    secrets = []
    with time_machine.travel(at(day), tick=False):
        for i, days in enumerate((90, 60, 30, 15, 7, 1)):
            issued = make_token(
                today=day, days_left=days, contacts=i % 3, origin=("api_gouv", "demarches_simplifiees")[i % 2]
            )
            secrets.append(issued.secret)
        sweep.reminders_sweep(today=day)
        # 0, 1 or 2 contacts: the ADMINS, one or two messages.
        assert delivery.reminders_deliver().sent == 8
    assert len(mail.outbox) == 8
    for message in mail.outbox:
        raw = message.message().as_string()
        dump = raw + text_of(message) + message.subject
        for secret in secrets:
            assert secret not in dump
            assert secret[12:] not in dump  # not even the part after the display prefix


# -- failures ---------------------------------------------------------------------------------------------------------
def test_smtp_down_keeps_messages_pending_with_bounded_backoff_then_failed(token_factory, today, settings):
    settings.EMAIL_BACKEND = "tests.notifications.test_delivery.RefusingBackend"
    settings.REMINDER_MAX_ATTEMPTS = 4
    token_factory(30)
    sweep.reminders_sweep(today=today)
    now = timezone.now()
    delays = []
    with time_machine.travel(now, tick=False) as traveller:
        for attempt in range(1, 5):
            result = delivery.reminders_deliver()
            assert (result.sent, result.failed) == (0, 1)
            message = ReminderMessage.objects.get()
            assert message.attempts == attempt and "Connection refused" in message.last_error
            assert message.sent_at is None
            if attempt < 4:
                assert message.status == ReminderStatus.PENDING
                assert Reminder.objects.get().status == ReminderStatus.PENDING
                delays.append(message.next_attempt_at - now)
                assert delivery.reminders_deliver().failed == 0  # not due before its backoff
                now = message.next_attempt_at
                traveller.move_to(now)
    assert delays == [dt.timedelta(minutes=1), dt.timedelta(minutes=5), dt.timedelta(minutes=25)]
    assert ReminderMessage.objects.get().status == ReminderStatus.FAILED
    reminder = Reminder.objects.get()
    assert reminder.status == ReminderStatus.FAILED and "Connection refused" in reminder.last_error
    assert mailer.retry_delay(20) == dt.timedelta(seconds=settings.REMINDER_RETRY_MAX_SECONDS)
    # Re-queued from the admin, then sent once SMTP is back.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert requeue.reminders_requeue(reminder_ids=[reminder.pk]) == 1
    assert Reminder.objects.get().status == ReminderStatus.PENDING
    assert delivery.reminders_deliver().sent == 1
    assert Reminder.objects.get().status == ReminderStatus.SENT
    assert len(mail.outbox) == 1


class RefusingOneRecipient(BaseEmailBackend):
    """An SMTP server that refuses one address (550) and accepts the others."""

    refused = "bob@example.org"

    def send_messages(self, messages):
        for message in messages:
            if self.refused in message.recipients():
                raise smtplib.SMTPRecipientsRefused({self.refused: (550, b"mailbox unavailable")})
        mail.outbox.extend(messages)
        return len(messages)


def test_a_refused_recipient_retries_only_its_own_message(token_factory, today, settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingOneRecipient"
    client = ClientFactory()
    contacts = [
        ContactFactory(client=client, email="alice@example.org", role=Contact.Role.REQUESTER),
        ContactFactory(client=client, email="bob@example.org"),
        ContactFactory(client=client, email="carol@example.org"),
    ]
    token_factory(30, client=client, contacts=contacts)
    sweep.reminders_sweep(today=today)
    result = delivery.reminders_deliver()
    assert (result.sent, result.failed) == (2, 1)
    assert sorted(m.to[0] for m in mail.outbox) == ["alice@example.org", "carol@example.org"]
    states = dict(ReminderMessage.objects.values_list("email", "status"))
    assert states == {"alice@example.org": "sent", "bob@example.org": "pending", "carol@example.org": "sent"}
    bob = ReminderMessage.objects.get(email="bob@example.org")
    assert "SMTPRecipientsRefused" in bob.last_error and bob.attempts == 1
    assert Reminder.objects.get().status == ReminderStatus.PENDING  # not done while one message is open
    # The retry, once its backoff elapsed and the mailbox is back: only Bob's message goes out.
    RefusingOneRecipient.refused = "nobody@example.org"
    try:
        with time_machine.travel(bob.next_attempt_at, tick=False):
            assert delivery.reminders_deliver().sent == 1
    finally:
        RefusingOneRecipient.refused = "bob@example.org"
    assert [m.to for m in mail.outbox[2:]] == [["bob@example.org"]]
    reminder = Reminder.objects.get()
    assert reminder.status == ReminderStatus.SENT and reminder.last_error == ""
    assert len(mail.outbox) == 3


# -- command, check, beat, admin --------------------------------------------------------------------------------------
def test_command_sweeps_and_delivers(token_factory, today, capsys):
    token_factory(30)
    token_factory(15)
    token_factory(100)
    call_command("send_renewal_reminders", "--today", today.isoformat())
    out = capsys.readouterr().out
    assert "sent: 2" in out and "skipped: 0" in out and "failed: 0" in out
    call_command("send_renewal_reminders", "--today", today.isoformat())
    assert "sent: 0" in capsys.readouterr().out
    assert len(mail.outbox) == 2


def test_command_rejects_a_bad_date(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("send_renewal_reminders", "--today", "2026-02-30")


def test_system_check_passes_and_fails_without_templates(settings):
    assert checks.check_reminder_templates() == []
    settings.REMINDER_DAYS = [120, 90, 60, 30, 15, 7]
    assert checks.check_reminder_templates() == []
    errors = checks.check_reminder_templates(thresholds=[90, 7], prefix="emails/nothing_here")
    assert {e.id for e in errors} == {"notifications.E001"}
    assert len(errors) == 4


def test_beat_runs_the_sweep_daily_at_the_configured_hour(settings):
    from django.conf import settings as conf

    schedule = celery_app.conf.beat_schedule
    entry = schedule["reminders: daily sweep"]
    assert entry["task"] == "notifications.sweep_reminders"
    assert entry["schedule"].hour == {conf.REMINDER_SWEEP_HOUR}
    assert entry["schedule"].minute == {0}
    assert celery_app.conf.timezone == conf.TIME_ZONE
    assert schedule["reminders: deliver due retries"]["task"] == "notifications.deliver_reminders"


def test_tasks_are_thin_and_idempotent(token_factory, today, django_capture_on_commit_callbacks, monkeypatch):
    from notifications import tasks

    assert tasks.sweep_reminders.acks_late and tasks.deliver_reminders.acks_late
    token_factory(30)
    delayed = []
    monkeypatch.setattr(tasks.deliver_reminders, "delay", lambda: delayed.append(1))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_reminders(today.isoformat()) == 1
        assert tasks.sweep_reminders(today.isoformat()) == 0
    assert delayed == [1]
    assert tasks.deliver_reminders() == 1
    assert tasks.deliver_reminders() == 0


def test_admin_lists_filters_searches_and_requeues(token_factory, today, client):
    issued = token_factory(30, contacts=2)
    sweep.reminders_sweep(today=today)
    reminder = Reminder.objects.get()
    Reminder.objects.update(status=ReminderStatus.FAILED)
    first, second = reminder.messages.order_by("id")
    ReminderMessage.objects.filter(pk=first.pk).update(status=ReminderStatus.FAILED, attempts=6)
    ReminderMessage.objects.filter(pk=second.pk).update(status=ReminderStatus.SENT)
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    url = reverse("admin:notifications_reminder_changelist")
    for query in (
        "",
        "?status__exact=failed",
        "?threshold=30",
        f"?q={issued.token.secret_prefix}",
        f"?q={issued.token.client.name}",
    ):
        response = client.get(url + query)
        assert response.status_code == 200
        assert issued.token.secret_prefix in response.content.decode()
    # The ledger row shows its messages, one per recipient.
    page = client.get(reverse("admin:notifications_reminder_change", args=[reminder.pk])).content.decode()
    assert first.email in page and second.email in page
    response = client.post(url, {"action": "requeue", "_selected_action": [reminder.pk]}, follow=True)
    assert response.status_code == 200 and "1 message remis en file" in response.content.decode()
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == ReminderStatus.PENDING and first.attempts == 0
    assert second.status == ReminderStatus.SENT  # only failed messages go back
    assert Reminder.objects.get().status == ReminderStatus.PENDING
    assert delivery.reminders_deliver().sent == 1
    assert [m.to for m in mail.outbox] == [[first.email]]
    assert Reminder.objects.get().status == ReminderStatus.SENT


def test_admin_requeues_failed_messages(token_factory, today, client):
    token_factory(30, contacts=2)
    sweep.reminders_sweep(today=today)
    Reminder.objects.update(status=ReminderStatus.FAILED)
    ReminderMessage.objects.update(status=ReminderStatus.FAILED, attempts=6)
    failed = ReminderMessage.objects.order_by("id").first()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:notifications_remindermessage_changelist")
    for query in ("", "?status__exact=failed", f"?q={failed.email}"):
        response = client.get(url + query)
        assert response.status_code == 200 and failed.email in response.content.decode()
    client.post(url, {"action": "requeue", "_selected_action": [failed.pk]}, follow=True)
    assert dict(ReminderMessage.objects.values_list("pk", "status")) == {
        m.pk: ("pending" if m.pk == failed.pk else "failed") for m in ReminderMessage.objects.all()
    }
    assert Reminder.objects.get().status == ReminderStatus.PENDING
    assert delivery.reminders_deliver().sent == 1
    assert Reminder.objects.get().status == ReminderStatus.FAILED  # the other message still failed


def test_a_reminder_without_any_recipient_gets_them_when_requeued(token_factory, today, settings):
    settings.ADMINS = []
    token_factory(30, contacts=0)
    sweep.reminders_sweep(today=today)
    reminder = Reminder.objects.get()
    assert reminder.status == ReminderStatus.FAILED and not reminder.messages.exists()
    settings.ADMINS = [("Admin", "Admin@Example.gouv.fr")]
    assert requeue.reminders_requeue(reminder_ids=[reminder.pk]) == 1
    assert delivery.reminders_deliver().sent == 1
    assert [m.to for m in mail.outbox] == [["admin@example.gouv.fr"]]
    assert Reminder.objects.get().status == ReminderStatus.SENT

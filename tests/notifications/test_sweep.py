"""The reminder rule (docs/domain.md), as the sweep applies it in the database."""

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications import delivery, rules, sweep
from notifications.models import Reminder, ReminderMessage, ReminderStatus
from tests.factories import ClientFactory, ContactFactory
from tokens.models import Contact
from tokens.services import token_revoke

from .conftest import at


@pytest.mark.parametrize(
    ("days_left", "expected"),
    [
        (-3, None),
        (0, None),
        (1, 15),
        (14, 15),
        (15, 15),
        (16, 30),
        (30, 30),
        (31, 60),
        (60, 60),
        (61, 90),
        (90, 90),
        (91, None),
    ],
)
def test_due_threshold(settings, days_left, expected):
    settings.REMINDER_DAYS = [90, 60, 30, 15]
    assert rules.due_threshold(days_left) == expected


S, P, F, C = ReminderStatus.SENT, ReminderStatus.PENDING, ReminderStatus.FAILED, ReminderStatus.CANCELLED


@pytest.mark.parametrize(
    ("days_left", "existing", "expected"),
    [
        (91, [], None),
        (90, [], 90),
        (89, [(90, S)], None),
        (75, [(90, P)], None),
        (60, [(90, S)], 60),
        (45, [(90, S)], 60),
        (45, [(90, S), (60, S)], None),
        (45, [(60, F)], None),  # the failed row holds the constraint: re-queue it from the admin
        (31, [(30, S)], None),  # a smaller threshold already sent covers a bigger one
        (30, [(90, S), (60, S)], 30),
        (20, [], 30),  # catch-up: only the tightest due
        (15, [(90, S), (60, S), (30, S)], 15),
        (10, [(15, S)], None),
        (10, [(15, P)], None),
        (10, [(15, C)], None),
        (10, [(30, F)], 15),
        (1, [], 15),
        (0, [], None),
        (-1, [], None),
    ],
)
def test_rule_table(token_factory, today, days_left, existing, expected):
    token = token_factory(days_left).token
    for threshold, status in existing:
        Reminder.objects.create(
            token=token, threshold=threshold, expires_at=token.expires_at, route=token.origin, status=status
        )
    result = sweep.reminders_sweep(today=today)
    new = Reminder.objects.filter(token=token).exclude(threshold__in=[t for t, _ in existing])
    assert result.queued == (0 if expected is None else 1)
    assert [r.threshold for r in new] == ([] if expected is None else [expected])
    if expected:
        assert new[0].status == ReminderStatus.PENDING
        assert new[0].expires_at == token.expires_at
        assert new[0].route == token.origin


def test_rows_of_a_previous_expiry_do_not_count(token_factory, today):
    token = token_factory(10).token
    Reminder.objects.create(
        token=token,
        threshold=15,
        expires_at=token.expires_at - dt.timedelta(days=548),
        route="api_gouv",
        status=S,
    )
    assert sweep.reminders_sweep(today=today).queued == 1


def test_catch_up_after_missed_days_sends_only_the_tightest(token_factory, today):
    token = token_factory(100).token
    # Sweeps ran up to 100 days before expiry, then nothing for 75 days: 25 days left.
    day = today + dt.timedelta(days=75)
    with time_machine.travel(at(day), tick=False):
        sweep.reminders_sweep(today=day)
        delivery.reminders_deliver()
    assert list(Reminder.objects.filter(token=token).values_list("threshold", "status")) == [(30, S)]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].extra_headers["X-Reminder-Threshold"] == "30"


def test_same_day_rerun_sends_nothing(token_factory, today):
    for days in (90, 60, 45, 30, 15, 3):
        token_factory(days)
    assert sweep.reminders_sweep(today=today).queued == 6
    assert delivery.reminders_deliver().sent == 6
    assert sweep.reminders_sweep(today=today).queued == 0
    assert delivery.reminders_deliver().sent == 0
    assert len(mail.outbox) == 6


def test_sweep_pages_with_constant_queries_per_batch(token_factory, today):
    for days in range(1, 26):
        token_factory(days, contacts=days % 3)  # 0 contacts: the ADMINS
    with CaptureQueriesContext(connection) as small:
        result = sweep.reminders_sweep(today=today, batch_size=5)
        assert (result.queued, result.messages, result.batches) == (25, 33, 5)
    Reminder.objects.all().delete()
    with CaptureQueriesContext(connection) as big:
        assert sweep.reminders_sweep(today=today, batch_size=100).messages == 33
    # Per batch: one SELECT of due tokens with their contacts, one INSERT of the ledger rows, one INSERT of their
    # messages (plus savepoints); 5 batches of 5 then an empty page; then one INSERT recording the completed sweep
    # (read by /healthz).
    assert connection.vendor == "postgresql"
    selects = [q for q in small.captured_queries if q["sql"].startswith("SELECT")]
    inserts = [q for q in small.captured_queries if q["sql"].startswith("INSERT")]
    assert len(selects) == 5 + 1 and len(inserts) == 5 * 2 + 1
    assert len([q for q in big.captured_queries if q["sql"].startswith(("SELECT", "INSERT"))]) == 3 + 1


def test_each_reminder_is_queued_with_its_messages_in_one_transaction(token_factory, today):
    token = token_factory(30, contacts=3).token
    sweep.reminders_sweep(today=today)
    reminder = Reminder.objects.get()
    emails = sorted(c.email for c in token.contacts.all())
    assert sorted(reminder.recipients) == emails
    assert sorted(reminder.messages.values_list("email", flat=True)) == emails
    assert set(reminder.messages.values_list("status", flat=True)) == {"pending"}
    # A repeated sweep adds neither a reminder nor a message.
    assert sweep.reminders_sweep(today=today).messages == 0
    assert ReminderMessage.objects.count() == 3


def test_sweep_uses_an_indexed_range_on_expires_at(token_factory, today):
    sql, params = sweep.due_tokens(today=today).query.sql_with_params()
    assert '"expires_at" >=' in sql and '"expires_at" <' in sql


# -- suppression ------------------------------------------------------------------------------------------------------
def test_revoked_expired_superseded_tokens_get_nothing(token_factory, today):
    revoked = token_factory(30).token
    token_revoke(token=revoked, by=None, reason="fuite")
    token_factory(0)  # expires later today
    old = token_factory(30).token
    new = token_factory(500).token
    old.renewed_by = new
    old.save(update_fields=["renewed_by"])
    assert sweep.reminders_sweep(today=today).queued == 0
    assert not Reminder.objects.exists()


@pytest.mark.parametrize("change", ["revoke", "supersede", "expire", "new_expiry"])
def test_pending_row_of_a_token_gone_ineligible_is_cancelled(token_factory, today, change):
    token = token_factory(15).token
    assert sweep.reminders_sweep(today=today).queued == 1
    if change == "revoke":
        token_revoke(token=token, by=None, reason="fuite")
    elif change == "supersede":
        token.renewed_by = token_factory(540).token
        token.save(update_fields=["renewed_by"])
    elif change == "new_expiry":
        token.expires_at += dt.timedelta(days=200)
        token.save(update_fields=["expires_at"])
    if change == "expire":
        with time_machine.travel(token.expires_at + dt.timedelta(minutes=1), tick=False):
            result = delivery.reminders_deliver()
    else:
        result = delivery.reminders_deliver()
    assert (result.sent, result.skipped) == (0, 1)
    reminder = Reminder.objects.get()
    assert reminder.status == ReminderStatus.CANCELLED and reminder.last_error
    assert mail.outbox == []


def test_a_contact_removed_before_delivery_gets_nothing(token_factory, today):
    client = ClientFactory()
    kept = ContactFactory(client=client, email="kept@example.org", role=Contact.Role.REQUESTER)
    gone = ContactFactory(client=client, email="gone@example.org")
    token = token_factory(15, client=client, contacts=[kept, gone]).token
    sweep.reminders_sweep(today=today)
    token.contacts.remove(gone)
    result = delivery.reminders_deliver()
    assert (result.sent, result.skipped) == (1, 1)
    assert [m.to for m in mail.outbox] == [["kept@example.org"]]
    assert ReminderMessage.objects.get(email="gone@example.org").status == ReminderStatus.CANCELLED
    assert Reminder.objects.get().status == ReminderStatus.SENT


def test_cancellation_covers_every_message_of_the_reminder(token_factory, today):
    token = token_factory(15, contacts=3).token
    sweep.reminders_sweep(today=today)
    token_revoke(token=token, by=None, reason="fuite")
    result = delivery.reminders_deliver()
    assert (result.sent, result.skipped) == (0, 3)
    assert set(ReminderMessage.objects.values_list("status", flat=True)) == {"cancelled"}
    reminder = Reminder.objects.get()
    assert reminder.status == ReminderStatus.CANCELLED and reminder.last_error == "jeton révoqué"
    assert mail.outbox == []

"""tokenmgr.outbox: the one claim / lease / settle / release / backoff mechanism of every outbox table."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import Reminder, ReminderMessage
from tests.factories import issue_token
from tokenmgr import outbox

BOX = outbox.Outbox(
    model=ReminderMessage,
    pending="pending",
    sending="sending",
    lease_seconds=lambda: 60,
    touched="updated_at",
)
NOW = dt.datetime(2026, 3, 11, 8, tzinfo=dt.UTC)


@pytest.fixture
def reminder(db):
    token = issue_token().token
    return Reminder.objects.create(token=token, threshold=30, expires_at=token.expires_at, route="api_gouv")


def message(reminder, email, **fields) -> ReminderMessage:
    return ReminderMessage.objects.create(reminder=reminder, email=email, **fields)


def test_claim_takes_expired_leases_first_then_due_rows_oldest_first_counting_an_attempt(reminder):
    late = message(reminder, "late@example.org", next_attempt_at=NOW - dt.timedelta(minutes=1))
    early = message(reminder, "early@example.org", next_attempt_at=NOW - dt.timedelta(minutes=5))
    message(reminder, "future@example.org", next_attempt_at=NOW + dt.timedelta(minutes=1))
    dead = message(
        reminder,
        "dead@example.org",
        status="sending",
        claimed_by="dead",
        attempts=1,
        lease_until=NOW - dt.timedelta(seconds=1),
        next_attempt_at=NOW,
    )
    live = message(
        reminder,
        "live@example.org",
        status="sending",
        claimed_by="live",
        attempts=1,
        lease_until=NOW + dt.timedelta(seconds=1),
        next_attempt_at=NOW,
    )
    with CaptureQueriesContext(connection) as queries:
        assert BOX.claim(worker="w", limit=2, now=NOW) == [dead.pk, early.pk]
    sql = [q["sql"] for q in queries.captured_queries]
    assert (
        sum("FOR UPDATE SKIP LOCKED" in q for q in sql) == 2 and sum(q.startswith("UPDATE") for q in sql) == 1
    )
    assert BOX.claim(worker="v", limit=10, now=NOW) == [late.pk]
    assert BOX.claim(worker="x", limit=10, now=NOW) == []
    rows = {m.pk: m for m in ReminderMessage.objects.all()}
    assert (rows[dead.pk].attempts, rows[dead.pk].claimed_by) == (2, "w")
    assert (rows[early.pk].attempts, rows[early.pk].updated_at) == (1, NOW)
    assert rows[early.pk].lease_until == NOW + dt.timedelta(seconds=60)
    assert rows[live.pk].claimed_by == "live" and rows[live.pk].attempts == 1


def test_settle_and_release_hold_only_while_the_worker_s_claim_does(reminder):
    a = message(reminder, "a@example.org", next_attempt_at=NOW)
    b = message(reminder, "b@example.org", next_attempt_at=NOW)
    assert BOX.claim(worker="w", limit=2, now=NOW) == [a.pk, b.pk]
    assert list(BOX.claimed([a.pk, b.pk], worker="w").order_by("pk")) == [a, b]
    assert not BOX.settle(a.pk, worker="other", status="sent")
    assert BOX.release([a.pk, b.pk], worker="other") == 0
    assert BOX.settle(a.pk, worker="w", status="sent")
    assert not BOX.settle(a.pk, worker="w", status="failed")  # no longer `sending`
    assert BOX.release([a.pk, b.pk], worker="w") == 1
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.status, a.lease_until, a.attempts) == ("sent", None, 1)
    assert (b.status, b.lease_until, b.attempts, b.claimed_by) == ("pending", None, 0, "w")
    assert b.updated_at > NOW and a.updated_at > NOW  # touched on each write
    assert not BOX.claimed([a.pk, b.pk], worker="w").exists()


def test_claimable_is_what_claim_would_take(reminder):
    due = message(reminder, "due@example.org", next_attempt_at=NOW)
    message(reminder, "later@example.org", next_attempt_at=NOW + dt.timedelta(hours=1))
    assert list(BOX.claimable(NOW)) == [due]


def test_backoff_grows_by_factor_and_is_capped():
    delays = [outbox.backoff(n, base=60, factor=5, cap=3600).total_seconds() for n in (0, 1, 2, 3, 9)]
    assert delays == [60, 60, 300, 1500, 3600]


def test_worker_ids_differ_between_runs():
    assert outbox.worker_id() != outbox.worker_id()
    assert len(outbox.worker_id()) <= 64  # fits claimed_by

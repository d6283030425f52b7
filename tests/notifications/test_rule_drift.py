"""The reminder rule's two faces agree: day after day, across a month end and a leap day, the tokens the SQL sweep
would queue (and the thresholds) are exactly the Python plan's `due` steps."""

import datetime as dt

import pytest

from notifications import rules, sweep
from notifications.models import Reminder, ReminderStatus
from notifications.opt_outs import token_reminders_decline
from tests.factories import issue_token
from tokens import validity
from tokens.models import Token
from tokens.services import token_revoke, token_supersede

START = dt.date(2028, 1, 20)  # 2028 is a leap year: the range crosses 31 January and 29 February
DAYS = 60


def python_due(tokens: list[Token], day: dt.date) -> set[tuple[int, int]]:
    plans = rules.reminder_plans(tokens, today=day)
    return {(pk, s.threshold) for pk, (steps, _) in plans.items() for s in steps if s.state == "due"}


def sql_due(day: dt.date) -> set[tuple[int, int]]:
    return set(sweep.due_tokens(today=day).values_list("id", "due_threshold"))


@pytest.fixture
def tokens(db, settings):
    settings.REMINDER_DAYS = [45, 30, 7, 1]
    made = []
    # Expiry days spread over the range, at several times of day (00:00, 00:30, 23:59 local).
    for i, offset in enumerate(range(0, DAYS + 50, 3)):
        day = START + dt.timedelta(days=offset)
        minutes = (0, 30, 23 * 60 + 59)[i % 3]
        token = issue_token(contacts=1).token
        Token.objects.filter(pk=token.pk).update(
            expires_at=validity.start_of_day(day) + dt.timedelta(minutes=minutes)
        )
        made.append(token)
    for token in made:
        token.refresh_from_db()
    token_revoke(token=made[5], by=None, reason="test")
    token_reminders_decline(token=made[8], by=None)
    token_supersede(old=made[11], new=made[12], by=None)
    # Ledger rows of every kind, some for a former expiry.
    for token, threshold, status, shift in [
        (made[14], 30, ReminderStatus.SENT, 0),
        (made[15], 7, ReminderStatus.FAILED, 0),
        (made[16], 45, ReminderStatus.CANCELLED, 0),
        (made[17], 30, ReminderStatus.SENT, 30),  # another expiry: does not count
        (made[18], 45, ReminderStatus.SENDING, 0),
    ]:
        Reminder.objects.create(
            token=token,
            threshold=threshold,
            expires_at=token.expires_at + dt.timedelta(days=shift),
            route="api_gouv",
            status=status,
        )
    return list(Token.objects.filter(pk__in=[t.pk for t in made]))


def test_sweep_and_plan_agree_every_day(tokens):
    queued_total = 0
    for offset in range(DAYS):
        day = START + dt.timedelta(days=offset)
        fresh = list(Token.objects.filter(pk__in=[t.pk for t in tokens]))
        expected = python_due(fresh, day)
        assert sql_due(day) == expected, day
        queued_total += sweep.reminders_sweep(today=day).queued  # the next day sees what this one queued
        assert python_due(fresh, day) == set(), day  # once queued, nothing is due any more that day
    assert queued_total > 20


def test_a_diverging_copy_would_be_caught(tokens, settings):
    """The comparison has teeth: a plan computed with other thresholds disagrees with the sweep."""
    day = START + dt.timedelta(days=10)
    sql = sql_due(day)
    settings.REMINDER_DAYS = [45, 30, 8, 1]
    assert python_due(tokens, day) != sql

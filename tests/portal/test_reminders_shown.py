"""The calendar feed and the token page's timeline show the same reminders (notifications.rules.reminders_shown)."""

import datetime as dt
import re

import pytest
import time_machine
from django.urls import reverse

from notifications.models import Reminder, ReminderStatus
from notifications.opt_outs import token_reminders_decline, token_reminders_resume
from notifications.rules import reminder_plans
from portal import ics, selectors
from tests.factories import issue_token
from tokens import validity
from tokens.models import Token
from tokens.services import token_revoke

TODAY = dt.date(2026, 3, 11)


def feed_thresholds(token: Token) -> set[int]:
    text = ics.calendar_for_tokens([token], now=validity.start_of_day(TODAY), host="h")
    return {int(n) for n in re.findall(rf"UID:{token.public_id}-reminder-(\d+)@h", text)}


def timeline_thresholds(token: Token) -> set[int]:
    steps = reminder_plans([token], today=TODAY)[token.pk][0]
    return {e.step.threshold for e in selectors.token_timeline(token, steps) if e.kind == "reminder"}


@pytest.fixture
def clock():
    with time_machine.travel(validity.start_of_day(TODAY) + dt.timedelta(hours=9), tick=False):
        yield


def expiring_in(token: Token, days: int) -> Token:
    Token.objects.filter(pk=token.pk).update(
        expires_at=validity.start_of_day(TODAY + dt.timedelta(days=days))
    )
    token.refresh_from_db()
    return token


def test_declined_token_has_no_reminder_to_come_in_either(settings, clock, own, logged):
    settings.REMINDER_DAYS = [90, 60, 30, 15]
    token = expiring_in(own.token, 100)
    assert feed_thresholds(token) == timeline_thresholds(token) == {90, 60, 30, 15}
    token_reminders_decline(token=token, by=None)
    assert feed_thresholds(token) == timeline_thresholds(token) == set()
    page = logged.get(reverse("portal_token", args=[token.public_id])).content.decode()
    assert "Rappel J-" not in page
    token_reminders_resume(token=token, by=None)
    assert feed_thresholds(token) == timeline_thresholds(token) == {90, 60, 30, 15}


def test_both_keep_what_was_sent_and_drop_what_will_not_come(settings, clock, own_client):
    settings.REMINDER_DAYS = [90, 60, 30, 15]
    cases = []
    sent = expiring_in(issue_token(client=own_client).token, 50)  # J-90 passed unsent, J-60 sent
    Reminder.objects.create(
        token=sent, threshold=60, expires_at=sent.expires_at, route="api_gouv", status=ReminderStatus.SENT
    )
    cases.append((sent, {90, 60, 30, 15}))
    revoked = expiring_in(issue_token(client=own_client).token, 50)
    Reminder.objects.create(
        token=revoked,
        threshold=60,
        expires_at=revoked.expires_at,
        route="api_gouv",
        status=ReminderStatus.SENT,
    )
    token_revoke(token=revoked, by=None, reason="fuite")
    revoked.refresh_from_db()
    cases.append((revoked, {90, 60}))  # what was sent (or passed unsent) stays; nothing more will come
    declined = expiring_in(issue_token(client=own_client).token, 20)
    token_reminders_decline(token=declined, by=None)
    cases.append((declined, set()))
    for token, expected in cases:
        assert feed_thresholds(token) == timeline_thresholds(token) == expected, token

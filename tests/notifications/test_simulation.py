"""18 months of daily sweeps, across a 29 February and both DST changes: 90, 60, 30, 15 — in order, once each."""

import datetime as dt

import time_machine
from django.core import mail

from notifications import delivery, sweep
from notifications.models import Reminder, ReminderStatus
from tests.factories import issue_token
from tokens import validity


def test_every_day_of_a_token_life_per_origin(db):
    tz = validity.local_tz()
    # One token per origin, issued just after midnight and just before midnight (day bounds in TIME_ZONE).
    issues = {
        "api_gouv": dt.datetime(2026, 11, 30, 0, 30, tzinfo=tz),
        "demarches_simplifiees": dt.datetime(2026, 11, 30, 23, 45, tzinfo=tz),
    }
    expiry_day = dt.date(2028, 5, 30)
    crossed = {dt.date(2027, 3, 28), dt.date(2027, 10, 31), dt.date(2028, 2, 29), dt.date(2028, 3, 26)}
    sent: dict[str, list[tuple[dt.date, int]]] = {origin: [] for origin in issues}
    seen = 0
    with time_machine.travel(issues["api_gouv"], tick=False) as traveller:
        for origin, issued_at in issues.items():
            token = issue_token(issued_at=issued_at, origin=origin).token
            assert validity.local_date(token.expires_at) == expiry_day
        day = dt.date(2026, 11, 30)
        while day <= expiry_day + dt.timedelta(days=3):
            traveller.move_to(dt.datetime.combine(day, dt.time(6, 0), tzinfo=tz))  # the beat hour
            sweep.reminders_sweep()
            delivery.reminders_deliver()
            for message in mail.outbox[seen:]:
                headers = message.extra_headers
                sent[headers["X-Reminder-Route"]].append((day, int(headers["X-Reminder-Threshold"])))
            seen = len(mail.outbox)
            crossed.discard(day)
            day += dt.timedelta(days=1)
    assert not crossed  # the loop went through the leap day and both DST changes
    for origin in issues:
        assert [t for _, t in sent[origin]] == [90, 60, 30, 15], origin
        assert [d for d, _ in sent[origin]] == [
            dt.date(2028, 3, 1),  # 90 days before 30 May 2028, across 29 Feb
            dt.date(2028, 3, 31),  # across the spring-forward of 26 March
            dt.date(2028, 4, 30),
            dt.date(2028, 5, 15),
        ]
    assert Reminder.objects.filter(status=ReminderStatus.SENT).count() == 8
    assert len(mail.outbox) == 8

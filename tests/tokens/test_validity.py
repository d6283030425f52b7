import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine

from tokens import validity

PARIS = ZoneInfo("Europe/Paris")


def paris(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("issued", "expected"),
    [
        (paris(2024, 1, 15, 10, 0), paris(2025, 7, 15, 10, 0)),
        # month-end clamp (docs/domain.md example)
        (paris(2024, 8, 31, 9, 30), paris(2026, 2, 28, 9, 30)),
        (paris(2024, 5, 31, 12, 0), paris(2025, 11, 30, 12, 0)),
        # 29 February: into a leap year keeps the 29th, out of one clamps to the 28th
        (paris(2022, 8, 29, 8, 0), paris(2024, 2, 29, 8, 0)),
        (paris(2024, 2, 29, 8, 0), paris(2025, 8, 29, 8, 0)),
        (paris(2022, 8, 31, 8, 0), paris(2024, 2, 29, 8, 0)),
        # same wall-clock time across DST: winter issue -> summer expiry and back
        (paris(2024, 12, 1, 10, 0), paris(2026, 6, 1, 10, 0)),
        (paris(2025, 3, 30, 10, 0), paris(2026, 9, 30, 10, 0)),
        # issued on a DST change day
        (paris(2025, 3, 30, 3, 30), paris(2026, 9, 30, 3, 30)),
        (paris(2024, 10, 27, 2, 30), paris(2026, 4, 27, 2, 30)),
        # late evening in Paris is still the previous day in UTC: the Paris calendar day counts
        (paris(2024, 12, 31, 23, 30), paris(2026, 6, 30, 23, 30)),
        (paris(2025, 1, 1, 0, 30), paris(2026, 7, 1, 0, 30)),
    ],
)
def test_expiry_is_18_calendar_months_same_wall_clock(issued, expected):
    assert validity.expiry_for(issued.astimezone(dt.UTC)) == expected


def test_expiry_into_a_spring_forward_gap_lands_after_it():
    # 2027-03-28 02:30 does not exist in Paris; the expiry is one instant, right after the gap.
    expires = validity.expiry_for(paris(2025, 9, 28, 2, 30))
    assert expires.astimezone(PARIS).date() == dt.date(2027, 3, 28)
    assert expires == dt.datetime(2027, 3, 28, 1, 30, tzinfo=dt.UTC)


def test_expiry_requires_aware_datetime():
    with pytest.raises(ValueError):
        validity.expiry_for(dt.datetime(2025, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize(
    ("now_utc", "expires", "left"),
    [
        (
            dt.datetime(2026, 5, 19, 21, 59, tzinfo=dt.UTC),
            paris(2026, 5, 20, 0, 5),
            1,
        ),  # 23:59 Paris on the 19th
        (
            dt.datetime(2026, 5, 19, 22, 1, tzinfo=dt.UTC),
            paris(2026, 5, 20, 0, 5),
            0,
        ),  # 00:01 Paris on the 20th
        (
            dt.datetime(2026, 3, 28, 12, 0, tzinfo=dt.UTC),
            paris(2026, 3, 30, 12, 0),
            2,
        ),  # across spring forward
        (dt.datetime(2026, 10, 24, 12, 0, tzinfo=dt.UTC), paris(2026, 10, 26, 12, 0), 2),  # across fall back
        (dt.datetime(2026, 5, 21, 10, 0, tzinfo=dt.UTC), paris(2026, 5, 20, 10, 0), -1),
    ],
)
def test_days_left_counts_paris_calendar_days(now_utc, expires, left):
    with time_machine.travel(now_utc, tick=False):
        assert validity.days_left(expires) == left


@pytest.mark.parametrize(
    ("issued", "origin"),
    [
        (paris(2019, 8, 31, 23, 59), "demarches_simplifiees"),
        (paris(2019, 9, 1, 0, 0), "api_gouv"),
        (dt.datetime(2019, 8, 31, 22, 30, tzinfo=dt.UTC), "api_gouv"),  # already 1 Sept in Paris
    ],
)
def test_default_origin(issued, origin):
    assert validity.default_origin(issued) == origin

import pytest
import time_machine

from availability.selectors import availability
from availability.services import counters_rollup

from .conftest import paris

pytestmark = pytest.mark.django_db

KEYS = {"total", "404", "502", "503", "504"}


@pytest.mark.parametrize(
    ("total", "unavailable", "expected"),
    [
        (0, 0, None),
        (1, 0, 100.0),
        (1, 1, 0.0),
        (3, 1, 66.67),  # 66.666…
        (3, 2, 33.33),  # 33.333…
        (8, 1, 87.5),
        (4000, 3, 99.93),  # 99.925 exactly: half-up (half-even and float round() give 99.92)
        (4000, 1, 99.98),  # 99.975
        (40000, 1, 100.0),  # 99.9975 rounds up to 100.0
        (200000, 1, 100.0),  # 99.9995
        (200001, 2, 100.0),  # 99.99900…
        (12615, 5, 99.96),
    ],
)
def test_rounding_half_up(total, unavailable, expected):
    assert availability(total, unavailable) == expected


def test_example_shape_and_zero_filled_days(ingest, stats):
    ingest(
        (paris(2026, 11, 25, 9, 0), 200),
        (paris(2026, 11, 25, 9, 1), 404),
        (paris(2026, 11, 25, 9, 2), 503),
        (paris(2026, 11, 27, 10, 0), 200),
    )
    with time_machine.travel(paris(2026, 11, 27, 10, 15), tick=False):
        response = stats("4d")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["endpoint", "days_availability", "total_availability", "last_week_availability"]
    days = body["days_availability"]
    assert list(days) == ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27"]
    assert all(set(v) == KEYS for v in days.values())
    assert days["2026-11-24"] == {"total": 0, "404": 0, "502": 0, "503": 0, "504": 0}
    assert days["2026-11-25"] == {"total": 3, "404": 1, "502": 0, "503": 1, "504": 0}
    assert days["2026-11-27"]["total"] == 1
    assert body["total_availability"] == 75.0
    assert body["last_week_availability"] == pytest.approx(66.67)


def test_null_availability_without_calls(stats):
    with time_machine.travel(paris(2026, 11, 27, 10, 15), tick=False):
        body = stats("2d").json()
    assert body["total_availability"] is None
    assert body["last_week_availability"] is None
    assert len(body["days_availability"]) == 3
    assert b"NaN" not in stats("2d").content


def test_500_is_unavailable_but_not_a_reported_key(ingest, stats):
    ingest((paris(2026, 11, 27, 9, 0), 500), (paris(2026, 11, 27, 9, 0), 200))
    with time_machine.travel(paris(2026, 11, 27, 10, 15), tick=False):
        body = stats("1d").json()
    assert body["days_availability"]["2026-11-27"] == {"total": 2, "404": 0, "502": 0, "503": 0, "504": 0}
    assert body["total_availability"] == 50.0


def test_window_is_exact_to_the_minute(ingest, stats):
    ingest(
        (paris(2026, 11, 27, 9, 14, 59), 502),  # just before now − 1h: excluded
        (paris(2026, 11, 27, 9, 15, 0), 200),  # window start: included
        (paris(2026, 11, 27, 10, 15, 0), 200),  # now: included
        (paris(2026, 11, 27, 10, 16, 0), 502),  # after now: excluded
    )
    with time_machine.travel(paris(2026, 11, 27, 10, 15), tick=False):
        body = stats("1h").json()
    assert body["days_availability"] == {"2026-11-27": {"total": 2, "404": 0, "502": 0, "503": 0, "504": 0}}
    assert body["total_availability"] == 100.0


def test_window_across_midnight_in_time_zone_days(ingest, stats):
    ingest(
        ("2026-11-26T22:50:00Z", 200),  # 23:50 in Paris, on the 26th
        ("2026-11-26T23:10:00Z", 503),  # 00:10 in Paris: the 27th although still the 26th in UTC
        ("2026-11-26T22:30:00Z", 200),  # before the window
    )
    with time_machine.travel(paris(2026, 11, 27, 0, 20), tick=False):
        body = stats("40m").json()
    assert list(body["days_availability"]) == ["2026-11-26", "2026-11-27"]
    assert body["days_availability"]["2026-11-26"]["total"] == 1
    assert body["days_availability"]["2026-11-27"] == {"total": 1, "404": 0, "502": 0, "503": 1, "504": 0}
    assert body["total_availability"] == 50.0


def test_spring_forward(ingest, stats):
    ingest(
        ("2026-03-28T11:59:00+01:00", 200),  # just before now − 1d (calendar: same wall-clock time)
        ("2026-03-28T12:00:00+01:00", 200),
        ("2026-03-29T01:59:00+01:00", 200),
        ("2026-03-29T03:00:00+02:00", 502),  # the same day, right after the gap
    )
    with time_machine.travel(paris(2026, 3, 29, 12, 0), tick=False):
        calendar = stats("1d").json()["days_availability"]
        elapsed = stats("24h").json()["days_availability"]
    assert calendar == {
        "2026-03-28": {"total": 1, "404": 0, "502": 0, "503": 0, "504": 0},
        "2026-03-29": {"total": 2, "404": 0, "502": 1, "503": 0, "504": 0},
    }
    assert elapsed["2026-03-28"]["total"] == 2


def test_fall_back(ingest, stats):
    ingest(
        ("2026-10-25T02:30:00+02:00", 200),  # first 02:30
        ("2026-10-25T02:30:00+01:00", 504),  # second 02:30, an hour later
        ("2026-10-24T12:00:00+02:00", 200),  # now − 1d exactly
        ("2026-10-24T11:59:00+02:00", 200),
    )
    with time_machine.travel(paris(2026, 10, 25, 12, 0), tick=False):
        body = stats("1d").json()
        assert stats("24h").json()["days_availability"]["2026-10-24"]["total"] == 0
    assert body["days_availability"]["2026-10-24"]["total"] == 1
    assert body["days_availability"]["2026-10-25"] == {"total": 2, "404": 0, "502": 0, "503": 0, "504": 1}


def test_last_week_is_the_seven_full_days_before_today(ingest, stats):
    ingest(
        (paris(2026, 11, 19, 23, 59), 502),  # 8 days ago: outside
        (paris(2026, 11, 20, 0, 0), 200),
        (paris(2026, 11, 26, 23, 59), 503),
        (paris(2026, 11, 27, 0, 1), 502),  # today: outside
    )
    with time_machine.travel(paris(2026, 11, 27, 10, 15), tick=False):
        body = stats("1h").json()
    assert body["total_availability"] is None
    assert body["last_week_availability"] == 50.0


def test_hour_and_minute_edges_sum_exactly(ingest, stats):
    """A partial day read from hour counters plus minute counters at both edges."""
    records = [(paris(2026, 11, 26, h, m), 200 if m % 3 else 503) for h in range(24) for m in (0, 7, 31, 59)]
    ingest(*records)
    with time_machine.travel(paris(2026, 11, 27, 8, 45), tick=False):
        body = stats("1d").json()
    # window: 2026-11-26 08:45 .. 2026-11-27 08:45
    kept = [r for r in records if r[0] >= paris(2026, 11, 26, 8, 45)]
    assert body["days_availability"]["2026-11-26"]["total"] == len(kept)
    assert body["days_availability"]["2026-11-26"]["503"] == sum(1 for r in kept if r[1] == 503)


def test_rollup_keeps_full_days_exact_and_snaps_old_edges_to_the_hour(ingest, stats, settings):
    settings.AVAILABILITY_MINUTE_RETENTION_DAYS = 2
    ingest(
        (paris(2026, 11, 10, 10, 20), 200),  # before the 10:30 edge but in its hour
        (paris(2026, 11, 10, 9, 59), 200),  # hour before: excluded
        (paris(2026, 11, 10, 10, 40), 200),
        (paris(2026, 11, 20, 12, 0), 502),
        (paris(2026, 11, 27, 10, 0), 200),
    )
    now = paris(2026, 11, 27, 10, 30)
    with time_machine.travel(now, tick=False):
        before = stats("17d").json()
        deleted = counters_rollup(now=now)
        assert deleted["minute"] == 4
        after = stats("17d").json()
        assert counters_rollup(now=now)["minute"] == 0  # twice: no-op
    assert before["days_availability"]["2026-11-10"]["total"] == 1
    assert after["days_availability"]["2026-11-10"]["total"] == 2  # snapped to 10:00
    for day in before["days_availability"]:
        if day != "2026-11-10":
            assert before["days_availability"][day] == after["days_availability"][day]


def test_cost_does_not_grow_with_calls(ingest, stats, django_assert_max_num_queries):
    ingest(*[(paris(2026, 11, 20, 12, m % 60), 200) for m in range(500)])
    with time_machine.travel(paris(2026, 11, 27, 10, 15), tick=False), django_assert_max_num_queries(12):
        assert stats("10y").status_code == 200


def test_cache_headers_and_etag(ingest, stats):
    ingest((paris(2026, 11, 27, 9, 0), 200))
    with time_machine.travel(paris(2026, 11, 27, 10, 15), tick=False):
        first = stats("1d")
        assert first.status_code == 200
        assert "max-age=" in first["Cache-Control"]
        etag = first["ETag"]
        again = stats("1d", **{"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again["ETag"] == etag
        assert "RateLimit-Remaining" in again
        assert stats("1d", **{"If-None-Match": '"other"'}).status_code == 200
        ingest((paris(2026, 11, 27, 9, 1), 200))
        changed = stats("1d", **{"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed["ETag"] != etag

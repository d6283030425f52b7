import datetime as dt

import pytest
import time_machine

from availability import periods

from .conftest import EP, paris

pytestmark = pytest.mark.django_db

NOW = paris(2026, 11, 27, 10, 15, 0)


@pytest.mark.parametrize(
    ("period", "start"),
    [
        ("1y", paris(2025, 11, 27, 10, 15)),
        ("10y", paris(2016, 11, 27, 10, 15)),
        ("2M", paris(2026, 9, 27, 10, 15)),
        ("6M", paris(2026, 5, 27, 10, 15)),
        ("120M", paris(2016, 11, 27, 10, 15)),
        ("3w", paris(2026, 11, 6, 10, 15)),
        ("4d", paris(2026, 11, 23, 10, 15)),
        ("5h", paris(2026, 11, 27, 5, 15)),
        ("6m", paris(2026, 11, 27, 10, 9)),
        ("7s", paris(2026, 11, 27, 10, 14, 53)),
        ("3652d", paris(2016, 11, 27, 10, 15)),
        ("521w", paris(2016, 12, 2, 10, 15)),
    ],
)
def test_valid_periods(period, start):
    assert periods.window_start(period, NOW) == start


@pytest.mark.parametrize(
    "period",
    [
        "",
        "0d",
        "0",
        "00d",
        "-1d",
        "+1d",
        " 1d",
        "1d ",
        "1d\n",
        "1 d",
        "1D",
        "1Y",
        "1W",
        "1H",
        "1S",
        "d",
        "1",
        "1.5d",
        "1e3d",
        "01d",
        "1dd",
        "1d1h",
        "١d",  # Arabic-Indic digit
        "１d",  # full-width digit
        "6M;DROP",
        "11y",
        "121M",
        "3653d",
        "522w",
        "1000000000s",
        "999999999y",
        "99999999999999999999999999d",
    ],
)
def test_rejected_periods(period):
    with pytest.raises(periods.PeriodError):
        periods.window_start(period, NOW)


def test_month_end_clamp():
    assert periods.window_start("1M", paris(2026, 3, 31, 8, 0)) == paris(2026, 2, 28, 8, 0)
    assert periods.window_start("1y", paris(2028, 2, 29, 8, 0)) == paris(2027, 2, 28, 8, 0)


def test_calendar_days_across_dst():
    # spring forward (2026-03-29): one calendar day back is 23 h of elapsed time
    now = paris(2026, 3, 29, 12, 0)
    assert now - periods.window_start("1d", now) == dt.timedelta(hours=23)
    assert now - periods.window_start("24h", now) == dt.timedelta(hours=24)
    # fall back (2026-10-25): 25 h
    now = paris(2026, 10, 25, 12, 0)
    assert now - periods.window_start("1d", now) == dt.timedelta(hours=25)
    assert now - periods.window_start("1w", now) == dt.timedelta(days=7, hours=1)


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    "period", ["0d", "-1d", "+1d", "1D", "m", "6M6M", "11y", "9999999999999999999y", "01d", ""]
)
def test_api_rejects_bad_period(stats, period):
    response = stats(period)
    assert response.status_code == 422
    assert response["Content-Type"].startswith("application/json")
    (error,) = response.json()["errors"]
    assert error["code"] == "invalid_period"
    assert set(error) == {"code", "title", "detail"}


@time_machine.travel(NOW, tick=False)
def test_api_rejects_repeated_period(client):
    response = client.get(f"/api/watchdoge/stats/provider_availabilities?endpoint={EP}&period=1d&period=2d")
    assert response.status_code == 422


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    "endpoint",
    [
        None,
        "",
        "api/v3/entreprises",
        "API/V3/ENTREPRISES_RESTORED",
        "api/v3/entreprises_restored/",
        "/api/v3/entreprises_restored",
        "v2/privileges",
    ],
)
def test_api_endpoint_allow_list(stats, endpoint):
    response = stats("1d", endpoint=endpoint)
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "invalid_endpoint"


@time_machine.travel(NOW, tick=False)
def test_every_reference_endpoint_is_accepted(stats):
    from tokens.catalogue import ENDPOINT_PATHS

    assert len(ENDPOINT_PATHS) == 25
    for endpoint in ENDPOINT_PATHS:
        assert stats("1h", endpoint=endpoint).status_code == 200


@time_machine.travel(NOW, tick=False)
def test_default_period_is_six_months(stats):
    days = stats().json()["days_availability"]
    assert next(iter(days)) == "2026-05-27"
    assert list(days)[-1] == "2026-11-27"


@pytest.mark.parametrize(
    "now",
    [
        NOW,
        paris(2026, 3, 28, 12, 0),
        paris(2026, 3, 29, 12, 0),
        paris(2026, 10, 25, 2, 30),
        paris(2028, 2, 29, 0, 0),
    ],
)
def test_documented_pattern_is_always_accepted(now):
    import re

    pattern = re.compile(periods.openapi_pattern())
    for unit, n in periods.SAFE_MAX.items():
        assert pattern.fullmatch(f"{n}{unit}") and not pattern.fullmatch(f"{n + 1}{unit}")
        periods.window_start(f"{n}{unit}", now)  # never rejected

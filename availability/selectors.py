"""Reads of the availability app: provider_availabilities, current status, incidents.

Every read costs O(days of the window): full TIME_ZONE days come from the day counters, the partial first and last
days from hour counters plus minute counters at their edges — never from individual calls.
"""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Q, Sum
from django.utils import timezone

from tokens import validity
from tokens.catalogue import ENDPOINT_PATHS
from tokens.models import Endpoint

from .models import EndpointActivity, Incident, MinuteCounter

REPORTED_STATUSES = (404, 502, 503, 504)  # the keys of days_availability besides "total" (docs/http-api.md)
UNAVAILABLE = (500, 502, 503, 504)


def endpoint_ids() -> dict[str, int]:
    """path -> tokens.Endpoint id for the endpoints of the reference list (cached: the list only changes by migration)."""
    key = "availability:endpoint-ids:v1"
    ids = cache.get(key)
    if not ids:
        ids = dict(Endpoint.objects.filter(path__in=ENDPOINT_PATHS).values_list("path", "id"))
        cache.set(key, ids, 300)
    return ids


def epoch_minute(moment: dt.datetime) -> int:
    return int(moment.timestamp() // 60)


def day_start_minute(day: dt.date) -> int:
    return epoch_minute(validity.start_of_day(day))


@dataclass
class DayTally:
    total: int = 0
    unavailable: int = 0
    s404: int = 0
    s502: int = 0
    s503: int = 0
    s504: int = 0

    def add(self, row) -> None:
        """Add a (total, unavailable, 404, 502, 503, 504) row of sums (None for no rows)."""
        total, unavailable, s404, s502, s503, s504 = (n or 0 for n in row)
        self.total += total
        self.unavailable += unavailable
        self.s404 += s404
        self.s502 += s502
        self.s503 += s503
        self.s504 += s504


def _plan_partial(a: int, b: int, day_lo: int, day_hi: int, minute_from, hour_from):
    """Split the minute range [a, b) of one day into (minute ranges, hour ranges), or None for "use the day row".

    Exact to the minute where minute counters are complete; where they were pruned, the edge snaps to the hour
    (staying inside the day); where hour counters were pruned too, the whole day counts.
    """
    if minute_from is not None and a < minute_from:
        if hour_from is not None and a // 60 < hour_from:
            return None
        a = a // 60 * 60 if a // 60 * 60 >= day_lo else -(-a // 60) * 60
        if b < minute_from:
            b = -(-b // 60) * 60 if -(-b // 60) * 60 <= day_hi else b // 60 * 60
    ha, hb = -(-a // 60), b // 60
    if ha >= hb:
        return [(a, b)], []
    minutes = [r for r in ((a, ha * 60), (hb * 60, b)) if r[0] < r[1]]
    return minutes, [(ha, hb)]


# One row shape for every part of the answer: (tag, day, total, unavailable, 404, 502, 503, 504).
_SUMS = 'CAST(SUM("count") AS bigint), ' + ", ".join(
    f'CAST(SUM("count") FILTER (WHERE status {cond}) AS bigint)'
    for cond in (f"IN ({', '.join(map(str, UNAVAILABLE))})", *(f"= {s}" for s in REPORTED_STATUSES))
)
_ENDPOINT = "(SELECT id FROM tokens_endpoint WHERE path = %s)"
_TAG_DAY, _TAG_WEEK, _TAG_MINUTE_MARK, _TAG_HOUR_MARK = -4, -1, -2, -3  # candidate ranges: 0, 1, ...
_DAYS_SQL = (
    f"SELECT {_TAG_DAY}, day, {_SUMS} FROM availability_daycounter"  # noqa: S608 (constants only)
    f" WHERE endpoint_id = {_ENDPOINT} AND day >= %s AND day <= %s GROUP BY day"
)
_WEEK_SQL = (
    f"SELECT {_TAG_WEEK}, NULL, {_SUMS} FROM availability_daycounter"  # noqa: S608
    f" WHERE endpoint_id = {_ENDPOINT} AND day >= %s AND day < %s"
)
_MARKS_SQL = (
    f"SELECT CASE resolution WHEN 'minute' THEN {_TAG_MINUTE_MARK} ELSE {_TAG_HOUR_MARK} END, NULL, complete_from,"  # noqa: S608
    " NULL, NULL, NULL, NULL, NULL FROM availability_retentionmark"
)
_RANGE_SQL = {
    table: "SELECT {tag}, NULL, " + _SUMS + f" FROM availability_{table}counter"  # noqa: S608
    f" WHERE endpoint_id = {_ENDPOINT} AND {table} >= %s AND {table} < %s"
    for table in ("minute", "hour")
}


def provider_availabilities(*, endpoint: str, start: dt.datetime, now: dt.datetime) -> dict:
    """docs/http-api.md answer for the calls with start ≤ t ≤ now, to the minute, in ONE query whatever the period.

    Full TIME_ZONE days come from the day counters (one summed row per day), the partial first and last days from
    hour counters plus minute counters at their edges. Which of those is exact depends on the retention marks
    (rows pruned by the rollup), read by the same query: the query sums every candidate range of the edge days
    (a few small index range scans) and the marks then pick the plan.
    """
    m0, m1 = epoch_minute(start), epoch_minute(now) + 1  # minute buckets [m0, m1)
    d0, d1 = validity.local_date(start), validity.local_date(now)
    today = d1
    # Edge days: the candidate plans for every state of the marks (see _plan_partial).
    edges = []  # (day, a, b, lo, hi)
    ranges: dict[tuple[str, int, int], int] = {}
    for day in sorted({d0, d1}):
        lo, hi = day_start_minute(day), day_start_minute(day + dt.timedelta(days=1))
        a, b = max(m0, lo), min(m1, hi)
        if (a, b) == (lo, hi):
            continue
        edges.append((day, a, b, lo, hi))
        for minute_from in (None, b, b + 1):
            minutes, hours = _plan_partial(a, b, lo, hi, minute_from, None)
            for key in [("minute", x, y) for x, y in minutes] + [("hour", x, y) for x, y in hours]:
                ranges.setdefault(key, len(ranges))
    parts = [_DAYS_SQL, _WEEK_SQL, _MARKS_SQL]
    params: list = [endpoint, d0, d1, endpoint, today - dt.timedelta(days=7), today]
    for (table, x, y), tag in ranges.items():
        parts.append(_RANGE_SQL[table].format(tag=tag))
        params += [endpoint, x, y]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        rows = cursor.fetchall()

    by_day: dict[dt.date, tuple] = {}
    sums: dict[int, tuple] = {}  # tag -> row: candidate ranges, the week and the marks
    for tag, day, *row in rows:
        if tag == _TAG_DAY:
            by_day[day if type(day) is dt.date else dt.date.fromisoformat(day)] = row  # SQLite: text
        else:
            sums[tag] = row
    minute_from = sums[_TAG_MINUTE_MARK][0] if _TAG_MINUTE_MARK in sums else None
    hour_from = sums[_TAG_HOUR_MARK][0] if _TAG_HOUR_MARK in sums else None
    for day, a, b, lo, hi in edges:
        plan = _plan_partial(a, b, lo, hi, minute_from, hour_from)
        if plan is None:
            continue  # the whole day's row counts
        tally = DayTally()
        for x, y in plan[0]:
            tally.add(sums[ranges["minute", x, y]])
        for x, y in plan[1]:
            tally.add(sums[ranges["hour", x, y]])
        by_day[day] = (tally.total, tally.unavailable, tally.s404, tally.s502, tally.s503, tally.s504)

    days = {}
    total = unavailable = 0
    zero = (0, 0, 0, 0, 0, 0)
    for ordinal in range(d0.toordinal(), d1.toordinal() + 1):
        day = dt.date.fromordinal(ordinal)
        t, u, s404, s502, s503, s504 = by_day.get(day, zero)
        u = u or 0  # FILTER sums are NULL when the day has no such call
        days[day.isoformat()] = {
            "total": t,
            "404": s404 or 0,
            "502": s502 or 0,
            "503": s503 or 0,
            "504": s504 or 0,
        }
        total += t
        unavailable += u
    week = sums[_TAG_WEEK]
    return {
        "endpoint": endpoint,
        "days_availability": days,
        "total_availability": availability(total, unavailable),
        "last_week_availability": availability(week[0] or 0, week[1] or 0),
    }


def availability(total: int, unavailable: int) -> float | None:
    """100 × (1 − unavailable/total) rounded half-up to 2 decimals, exactly (integer arithmetic); None if no calls."""
    if total <= 0:
        return None
    hundredths = (2 * 10_000 * (total - unavailable) + total) // (2 * total)
    return hundredths / 100  # the nearest double to an exact 2-decimal value: serialises as written


def current_status(*, now: dt.datetime | None = None) -> list[dict]:
    """UP / DOWN / UNKNOWN per endpoint from the minute counters of the last AVAILABILITY_STATUS_WINDOW_MINUTES.

    DOWN when unavailable calls are at least AVAILABILITY_DOWN_RATIO of the calls; UNKNOWN without calls.
    """
    now = now or timezone.now()
    window = settings.AVAILABILITY_STATUS_WINDOW_MINUTES
    last = epoch_minute(now)
    endpoints = list(Endpoint.objects.filter(path__in=ENDPOINT_PATHS).order_by("path"))
    rows = (  # endpoint by endpoint along the primary key (endpoint, minute, status)
        MinuteCounter.objects.filter(
            endpoint_id__in=[e.id for e in endpoints], minute__gt=last - window, minute__lte=last
        )
        .values_list("endpoint_id")
        .annotate(total=Sum("count"), unavailable=Sum("count", filter=Q(status__in=UNAVAILABLE)))
        .order_by()
    )
    counts = {e: (t, u or 0) for e, t, u in rows}
    last_calls = dict(EndpointActivity.objects.values_list("endpoint_id", "last_call_at"))
    ongoing = defaultdict(list)
    for endpoint_id, incident_id in Incident.objects.ongoing(now).values_list("endpoints", "id"):
        if endpoint_id is not None:
            ongoing[endpoint_id].append(incident_id)
    result = []
    for endpoint in endpoints:
        total, unavailable = counts.get(endpoint.id, (0, 0))
        if total == 0:
            state = "UNKNOWN"
        elif unavailable >= settings.AVAILABILITY_DOWN_RATIO * total:
            state = "DOWN"
        else:
            state = "UP"
        result.append(
            {
                "endpoint": endpoint.path,
                "label": endpoint.label,
                "status": state,
                "calls": total,
                "unavailable_calls": unavailable,
                "last_call_at": last_calls.get(endpoint.id),
                "ongoing_incidents": ongoing.get(endpoint.id, []),
            }
        )
    return result


def incidents_overview(*, now: dt.datetime | None = None) -> dict[str, list[Incident]]:
    now = now or timezone.now()
    base = Incident.objects.prefetch_related("endpoints")
    return {
        "ongoing": list(base.ongoing(now).order_by("-starts_at")),
        "upcoming": list(base.upcoming(now).order_by("starts_at")),
        "past": list(base.past(now).order_by("-starts_at")[: settings.AVAILABILITY_PAST_INCIDENTS_SHOWN]),
    }

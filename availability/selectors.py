"""Reads of the availability app: provider_availabilities, current status, incidents.

Every read costs O(days of the window): full TIME_ZONE days come from the day counters, the partial first and last
days from hour counters plus minute counters at their edges — never from individual calls.
"""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from tokens import validity
from tokens.catalogue import ENDPOINT_PATHS
from tokens.models import Endpoint

from .models import DayCounter, EndpointActivity, HourCounter, Incident, MinuteCounter, RetentionMark

REPORTED_STATUSES = (404, 502, 503, 504)  # the keys of days_availability besides "total" (CONTRACT §5)
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


def _marks() -> tuple[int | None, int | None]:
    marks = dict(RetentionMark.objects.values_list("resolution", "complete_from"))
    return marks.get(RetentionMark.Resolution.MINUTE), marks.get(RetentionMark.Resolution.HOUR)


@dataclass
class DayTally:
    total: int = 0
    unavailable: int = 0
    by_status: dict | None = None

    def add(self, status: int, n: int) -> None:
        self.total += n
        if status in UNAVAILABLE:
            self.unavailable += n
        if status in REPORTED_STATUSES:
            self.by_status[status] = self.by_status.get(status, 0) + n


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


def window_tallies(*, endpoint_id: int, start: dt.datetime, end: dt.datetime) -> dict[dt.date, DayTally]:
    """Per TIME_ZONE day (every day of the window, oldest first), the calls with start ≤ t ≤ end, to the minute."""
    m0, m1 = epoch_minute(start), epoch_minute(end) + 1  # minute buckets [m0, m1)
    d0, d1 = validity.local_date(start), validity.local_date(end)
    tallies = {}
    day = d0
    while day <= d1:
        tallies[day] = DayTally(by_status={})
        day += dt.timedelta(days=1)
    minute_from, hour_from = _marks()
    full_days = set(tallies)
    minute_ranges: list[tuple[dt.date, int, int]] = []
    hour_ranges: list[tuple[dt.date, int, int]] = []
    for day in {d0, d1}:
        lo, hi = day_start_minute(day), day_start_minute(day + dt.timedelta(days=1))
        a, b = max(m0, lo), min(m1, hi)
        if (a, b) == (lo, hi):
            continue
        plan = _plan_partial(a, b, lo, hi, minute_from, hour_from)
        if plan is None:
            continue
        full_days.discard(day)
        minute_ranges += [(day, x, y) for x, y in plan[0]]
        hour_ranges += [(day, x, y) for x, y in plan[1]]
    if full_days:
        for day, total, unavailable, *reported in _day_rows(endpoint_id, min(full_days), max(full_days)):
            if day in full_days:
                tally = tallies[day]
                tally.total += total
                tally.unavailable += unavailable
                for status, n in zip(REPORTED_STATUSES, reported, strict=True):
                    if n:
                        tally.by_status[status] = tally.by_status.get(status, 0) + n
    for model, column, ranges in (
        (MinuteCounter, "minute", minute_ranges),
        (HourCounter, "hour", hour_ranges),
    ):
        for day, x, y in ranges:
            rows = (
                model.objects.filter(endpoint_id=endpoint_id, **{f"{column}__gte": x, f"{column}__lt": y})
                .values_list("status")
                .annotate(n=Sum("count"))
                .order_by()
            )
            for status, n in rows:
                tallies[day].add(status, n)
    return tallies


def _day_rows(endpoint_id: int, first: dt.date, last: dt.date):
    """(day, total, unavailable, 404, 502, 503, 504) per day with calls in [first, last]: one row per day."""
    return (
        DayCounter.objects.filter(endpoint_id=endpoint_id, day__gte=first, day__lte=last)
        .values_list("day")
        .annotate(
            total=Sum("count"),
            unavailable=Coalesce(Sum("count", filter=Q(status__in=UNAVAILABLE)), 0),
            **{f"s{s}": Coalesce(Sum("count", filter=Q(status=s)), 0) for s in REPORTED_STATUSES},
        )
        .order_by()
    )


def availability(total: int, unavailable: int) -> float | None:
    """100 × (1 − unavailable/total) rounded half-up to 2 decimals, exactly (integer arithmetic); None if no calls."""
    if total <= 0:
        return None
    hundredths = (2 * 10_000 * (total - unavailable) + total) // (2 * total)
    return hundredths / 100  # the nearest double to an exact 2-decimal value: serialises as written


def provider_availabilities(*, endpoint: str, start: dt.datetime, now: dt.datetime) -> dict:
    endpoint_id = endpoint_ids()[endpoint]
    tallies = window_tallies(endpoint_id=endpoint_id, start=start, end=now)
    days = {}
    total = unavailable = 0
    for day, tally in tallies.items():
        days[day.isoformat()] = {
            "total": tally.total,
            **{str(s): tally.by_status.get(s, 0) for s in REPORTED_STATUSES},
        }
        total += tally.total
        unavailable += tally.unavailable
    today = validity.local_date(now)
    week = DayCounter.objects.filter(
        endpoint_id=endpoint_id, day__gte=today - dt.timedelta(days=7), day__lt=today
    ).aggregate(total=Sum("count"), unavailable=Sum("count", filter=Q(status__in=UNAVAILABLE)))
    return {
        "endpoint": endpoint,
        "days_availability": days,
        "total_availability": availability(total, unavailable),
        "last_week_availability": availability(week["total"] or 0, week["unavailable"] or 0),
    }


def current_status(*, now: dt.datetime | None = None) -> list[dict]:
    """UP / DOWN / UNKNOWN per endpoint from the minute counters of the last AVAILABILITY_STATUS_WINDOW_MINUTES.

    DOWN when unavailable calls are at least AVAILABILITY_DOWN_RATIO of the calls; UNKNOWN without calls.
    """
    now = now or timezone.now()
    window = settings.AVAILABILITY_STATUS_WINDOW_MINUTES
    last = epoch_minute(now)
    rows = (
        MinuteCounter.objects.filter(minute__gt=last - window, minute__lte=last)
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
    for endpoint in Endpoint.objects.filter(path__in=ENDPOINT_PATHS).order_by("path"):
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

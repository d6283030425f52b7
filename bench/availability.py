"""Availability statistics: provider_availabilities latency on a year of counters, ingest_calls throughput.

    .venv/bin/python scripts/with_services.py -- .venv/bin/python bench/availability.py
    BENCH_INGEST_LINES=2000000 python bench/run_all.py availability

Counters equivalent to 100 M calls over a year for the 25 endpoints are inserted directly (day counters for 366 days,
hour counters for 366 days, minute counters for the minute retention), then GET provider_availabilities is timed
through the whole Django stack in process (test client: middleware, rate limiter, JSON, ETag) for periods 1d, 6M
and 1y: p50 of 6M ≤ 30 ms and p50(1y) / p50(1d) ≤ 3; the selector alone is timed too (informative rows).
Then `ingest_calls` reads a generated chronological JSON Lines file of the last day (2 M lines by default) on top of
the seeded minute counters (so every minute row is an update, the costly case), compared with a parse-only
baseline in the same run (read + json.loads of every line): ≥ 100,000 lines/s.
"""

import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, django_setup, log, register  # noqa: E402

CALLS_PER_YEAR = 100_000_000
INGEST_LINES = int(os.environ.get("BENCH_INGEST_LINES", 2_000_000))
REPEATS = int(os.environ.get("BENCH_AVAILABILITY_REPEATS", 60))
# (status, share of the calls)
MIX = ((200, 0.955), (404, 0.035), (502, 0.004), (503, 0.004), (504, 0.002))


def seed_counters() -> int:
    """Counters of a year of calls, inserted server-side with generate_series (not call by call)."""
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from availability.models import DayCounter, HourCounter, MinuteCounter
    from availability.selectors import endpoint_ids

    assert connection.vendor == "postgresql", "the benchmark needs PostgreSQL (DATABASE_URL)"
    ids = sorted(endpoint_ids().values())
    per_endpoint_day = CALLS_PER_YEAR / 365 / len(ids)
    now_minute = int(timezone.now().timestamp() // 60)
    with connection.cursor() as cursor:
        for model in (MinuteCounter, HourCounter, DayCounter):
            cursor.execute(f"TRUNCATE {model._meta.db_table}")
        mix_day = ", ".join(f"({s}, {round(per_endpoint_day * share)})" for s, share in MIX)
        cursor.execute(
            f"""INSERT INTO availability_daycounter (endpoint_id, day, status, count)
            SELECT e, d::date, s.status, s.n
            FROM unnest(%s::bigint[]) e, generate_series(current_date - 366, current_date, interval '1 day') d,
                 (VALUES {mix_day}) s(status, n)""",
            [ids],
        )
        mix_hour = ", ".join(f"({s}, {max(1, round(per_endpoint_day / 24 * share))})" for s, share in MIX)
        cursor.execute(
            f"""INSERT INTO availability_hourcounter (endpoint_id, hour, status, count)
            SELECT e, h, s.status, s.n
            FROM unnest(%s::bigint[]) e, generate_series(%s, %s) h, (VALUES {mix_hour}) s(status, n)""",
            [ids, now_minute // 60 - 366 * 24, now_minute // 60],
        )
        per_minute = per_endpoint_day / 1440
        cursor.execute(
            """INSERT INTO availability_minutecounter (endpoint_id, minute, status, count)
            SELECT e, m, s.status, s.n
            FROM unnest(%s::bigint[]) e, generate_series(%s, %s) m, (VALUES (200, %s), (404, 1)) s(status, n)
            UNION ALL
            SELECT e, m, 503, 1 FROM unnest(%s::bigint[]) e, generate_series(%s, %s, 97) m""",
            [
                ids,
                now_minute - settings.AVAILABILITY_MINUTE_RETENTION_DAYS * 1440,
                now_minute,
                max(1, round(per_minute) - 1),
                ids,
                now_minute - settings.AVAILABILITY_MINUTE_RETENTION_DAYS * 1440,
                now_minute,
            ],
        )
        # A year of history has been through autovacuum in production: statistics and visibility map.
        cursor.execute(
            "VACUUM ANALYZE availability_minutecounter, availability_hourcounter, availability_daycounter"
        )
        cursor.execute("SELECT sum(count) FROM availability_daycounter")
        return int(cursor.fetchone()[0])


def time_queries(period: str, endpoints: list[str]) -> float:
    """p50 in ms of GET provider_availabilities through the whole Django stack, in process (test client: URL
    resolution, middleware, rate limiter in Redis, the query, JSON, ETag); no WSGI server, no new connection."""
    from django.test import Client

    client = Client()
    samples = []
    for i in range(REPEATS):
        started = time.perf_counter()
        response = client.get(
            "/api/watchdoge/stats/provider_availabilities",
            {"period": period, "endpoint": endpoints[i % len(endpoints)]},
        )
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]
    return statistics.median(samples)


def time_selector(period: str, endpoints: list[str]) -> float:
    """p50 in ms of the selector alone (the query and the answer dict): what the stack adds is the difference."""
    from django.utils import timezone

    from availability import periods, selectors

    samples = []
    for i in range(REPEATS):
        started = time.perf_counter()
        now = timezone.now()
        selectors.provider_availabilities(
            endpoint=endpoints[i % len(endpoints)], start=periods.window_start(period, now), now=now
        )
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def generate_calls(path: str, lines: int, endpoints: list[str], seed: int = 6) -> None:
    """A chronological log of `lines` calls over the last day (as log shippers write them)."""
    import datetime as dt

    rng = random.Random(seed)
    statuses = [s for s, _ in MIX]
    weights = [w for _, w in MIX]
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    step = 86400 / lines
    with open(path, "w") as out:
        chosen = rng.choices(statuses, weights, k=lines)
        for i in range(lines):
            stamp = (start + dt.timedelta(seconds=int(i * step))).astimezone().isoformat()
            out.write(
                json.dumps(
                    {"timestamp": stamp, "endpoint": rng.choice(endpoints), "status": chosen[i], "ms": 120}
                )
                + "\n"
            )


def parse_only(path: str) -> float:
    started = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for line in f:
            json.loads(line)
            n += 1
    return n / (time.perf_counter() - started)


@register("availability")
def run() -> list[Row]:
    django_setup()
    from django.conf import settings
    from django.core.management import call_command

    from tokens.catalogue import ENDPOINT_PATHS

    settings.RATELIMIT_STATS_PER_IP = 10**9
    endpoints = sorted(ENDPOINT_PATHS)
    log("availability: seeding a year of counters")
    started = time.perf_counter()
    calls = seed_counters()
    log(f"availability: {calls:,} calls in counters, seeded in {time.perf_counter() - started:.0f} s")
    time_queries("1d", endpoints[:3])  # warm-up
    p50 = {period: time_queries(period, endpoints) for period in ("1d", "6M", "1y")}
    selector_p50 = {period: time_selector(period, endpoints) for period in ("1d", "6M", "1y")}
    log(f"availability: p50 {p50}, selector alone {selector_p50}")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "calls.jsonl")
        log(f"availability: generating {INGEST_LINES:,} call lines")
        generate_calls(path, INGEST_LINES, endpoints)
        baseline = parse_only(path)
        log(f"availability: ingest_calls ({os.path.getsize(path) / 1e6:.0f} MB)")
        out = io.StringIO()
        started = time.perf_counter()
        call_command("ingest_calls", path, stdout=out)
        ingest_s = time.perf_counter() - started
        log(f"availability: {out.getvalue().strip()} in {ingest_s:.1f} s")
    return [
        Row("provider_availabilities p50 period=6M", p50["6M"], target=30, unit="ms", higher_is_better=False),
        Row(
            "provider_availabilities p50 period=1y",
            p50["1y"],
            baseline=p50["1d"],
            unit="ms",
            higher_is_better=False,
        ),
        Row("provider_availabilities p50 1y / 1d", p50["1y"] / p50["1d"], target=3, higher_is_better=False),
        Row("  selector alone p50 period=6M", selector_p50["6M"], unit="ms", higher_is_better=False),
        Row(
            "  selector alone p50 period=1y",
            selector_p50["1y"],
            baseline=selector_p50["1d"],
            unit="ms",
            higher_is_better=False,
        ),
        Row(
            f"ingest_calls lines/s ({INGEST_LINES:,} lines)",
            INGEST_LINES / ingest_s,
            baseline=baseline,
            target=100_000,
        ),
    ]


if __name__ == "__main__":
    from _common import report

    rows = run()
    report(rows)
    sys.exit(1 if any(r.ok is False for r in rows) else 0)

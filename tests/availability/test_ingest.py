import io
import json
import threading
from collections import Counter

import pytest
from django.core.management import call_command
from django.db import connection

from availability.models import DayCounter, EndpointActivity, HourCounter, MinuteCounter
from availability.services import CallParser, calls_ingest
from tokens.models import Endpoint

from .conftest import EP, line, paris


def run_command(path_or_dash, capsys, monkeypatch=None, stdin: bytes | None = None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = 0
    try:
        call_command("ingest_calls", path_or_dash)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def totals():
    return (
        sum(MinuteCounter.objects.values_list("count", flat=True)),
        sum(HourCounter.objects.values_list("count", flat=True)),
        sum(DayCounter.objects.values_list("count", flat=True)),
    )


@pytest.mark.django_db
def test_bad_lines_are_reported_and_skipped(tmp_path, capsys):
    lines = [
        line(paris(2026, 11, 27, 10, 15, 3)),  # 1 ok
        "{not json",  # 2
        json.dumps({"timestamp": "2026-11-27T10:15:03+01:00", "endpoint": "api/v9/nope", "status": 200}),  # 3
        json.dumps({"timestamp": "2026-11-27T10:15:03+01:00", "endpoint": EP, "status": "200"}),  # 4
        json.dumps({"timestamp": "2026-11-27T10:15:03+01:00", "endpoint": EP, "status": 99}),  # 5
        json.dumps({"timestamp": "2026-11-27T10:15:03+01:00", "endpoint": EP, "status": True}),  # 6
        json.dumps({"timestamp": "27/11/2026 10:15", "endpoint": EP, "status": 200}),  # 7
        json.dumps({"timestamp": "2026-02-30T10:15:03+01:00", "endpoint": EP, "status": 200}),  # 8
        "",  # 9 blank: ignored
        "[1, 2]",  # 10
        json.dumps({"timestamp": "2026-11-27T10:16:00Z", "endpoint": EP, "status": 503, "extra": 1}),  # 11 ok
        json.dumps({"endpoint": EP, "status": 200}),  # 12 no timestamp
    ]
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run_command(str(path), capsys)
    assert code == 1
    reported = [int(row.split()[1]) for row in err.strip().splitlines()]
    assert reported == [2, 3, 4, 5, 6, 7, 8, 10, 12]
    assert "2 appels comptés, 9 lignes rejetées" in out
    assert totals() == (2, 2, 2)
    assert EndpointActivity.objects.get().last_call_at.isoformat() == "2026-11-27T10:16:00+00:00"


@pytest.mark.django_db
def test_clean_file_exits_zero_from_stdin(capsys, monkeypatch):
    data = "\n".join(line(paris(2026, 11, 27, 10, m)) for m in range(5)).encode()
    code, out, err = run_command("-", capsys, monkeypatch, stdin=data)
    assert (code, err) == (0, "")
    assert totals() == (5, 5, 5)


@pytest.mark.django_db
def test_missing_file(capsys):
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        call_command("ingest_calls", "/nonexistent/calls.jsonl")


@pytest.mark.django_db
def test_chunks_accumulate_and_reingest_adds(ingest):
    records = [(paris(2026, 11, 27, 10, m % 3), 200 + (m % 2) * 302) for m in range(10)]
    ingest(*records, chunk_lines=3)
    assert totals() == (10, 10, 10)
    assert MinuteCounter.objects.count() == 6  # 3 minutes × 2 statuses: upserts merged the chunks
    ingest(*records, chunk_lines=4)
    assert totals() == (20, 20, 20)
    assert set(MinuteCounter.objects.values_list("count", flat=True)) <= {2, 4}


@pytest.mark.django_db
def test_naive_timestamp_read_in_time_zone(ingest):
    ingest(("2026-11-27T00:30:00", 200))
    assert DayCounter.objects.get().day.isoformat() == "2026-11-27"


@pytest.mark.django_db(transaction=True)
def test_concurrent_ingests_lose_nothing():
    """Four threads (four PostgreSQL connections) upsert the same keys at once, in several chunks each.

    The endpoint catalogue comes from tests/conftest.py's _seeded_catalogue (re-seeded after another transactional
    test's flush): without it every line would be rejected as an unknown endpoint (counts 0).
    """
    assert Endpoint.objects.filter(path=EP).exists()
    records = [line(paris(2026, 11, 27, 10, m % 7), (200, 404, 502)[m % 3]) for m in range(600)]
    errors = []
    accepted = []
    barrier = threading.Barrier(4)

    def worker():
        try:
            barrier.wait()
            accepted.append(calls_ingest(lines=records, chunk_lines=50).accepted)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert accepted == [600] * 4
    assert totals() == (2400, 2400, 2400)
    assert MinuteCounter.objects.count() == 21
    expected = Counter((json.loads(r)["timestamp"], json.loads(r)["status"]) for r in records)
    assert sorted(MinuteCounter.objects.values_list("count", flat=True)) == sorted(
        4 * n for n in expected.values()
    )


@pytest.mark.django_db
def test_batch_decoding_never_misaligns_lines(ingest):
    """A line holding two records plus two lines merging into one value keep the count: still all rejected."""
    rec = line(paris(2026, 11, 27, 10, 0))
    result = ingest(f"{rec}, {rec}", '{"c": [' + rec, rec + "]}", rec, max_errors=10)
    assert (result.accepted, result.rejected) == (1, 3)
    assert [n for n, _ in result.errors] == [1, 2, 3]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("stamp", "minute_utc"),
    [
        ("2026-11-27T10:15:59+01:00", "09:15"),
        ("2026-11-27T10:15:59.999999+01:00", "09:15"),
        ("2026-11-27T09:15:00Z", "09:15"),
        ("2026-11-27T09:15:00.5Z", "09:15"),
        ("2026-11-27 10:15:30+01:00", "09:15"),
        ("2026-11-27T15:00:59+05:45", "09:15"),
        ("2026-11-27T10:15+01:00", "09:15"),
    ],
)
def test_timestamp_forms(ingest, stamp, minute_utc):
    # the same minute seen twice with other seconds goes through the per-minute cache
    result = ingest((stamp, 200), (stamp.replace(":59", ":01").replace(":30", ":02"), 200))
    assert result.accepted == 2
    (minute,) = MinuteCounter.objects.values_list("minute", flat=True)
    assert f"{minute // 60 % 24:02d}:{minute % 60:02d}" == minute_utc


@pytest.mark.django_db
@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-27T10:15:60+01:00",
        "2026-11-27T10:15:03.+01:00",
        "2026-11-27T10:15:0a+01:00",
        "2026-11-27T10:15:03+25:00",
        "2026-11-27",
    ],
)
def test_bad_timestamps(ingest, stamp):
    result = ingest(line(paris(2026, 11, 27, 10, 15, 1)), (stamp, 200), max_errors=5)
    assert (result.accepted, result.rejected) == (1, 1)
    assert "horodatage" in result.errors[0][1]


FAST_STAMPS = [
    "2026-11-27T10:15:03+01:00",
    "2026-11-27T10:15:59+01:00",
    "2026-11-27T09:15:00Z",
    "2026-11-27 10:16:00+01:00",
    "2026-11-27T15:00:59+05:45",
    "2026-11-27T10:15:30",
    "2026-10-25T02:30:00",  # ambiguous wall time (DST end) in TIME_ZONE
    "2026-03-29T01:59:59+01:00",
    "2026-03-29T03:00:00+02:00",
]


FRACTION_STAMPS = [s[:19] + ".123" + s[19:] for s in FAST_STAMPS]


@pytest.mark.parametrize(
    ("stamps", "fast_path"),
    [
        (FAST_STAMPS, True),
        (FRACTION_STAMPS, True),  # one fraction width in the batch
        ([s.replace(".123", ".123456") for s in FRACTION_STAMPS], True),
        ([*FRACTION_STAMPS, "2026-11-27T10:15:03.25+01:00"], False),  # two widths
        ([*FAST_STAMPS, "2026-11-27T10:15:03.25+01:00"], False),  # with and without
        ([*FAST_STAMPS, "2026-11-27T10:15+01:00"], False),  # no seconds
        ([*FAST_STAMPS, "2026-11-27T10:15:03,5+01:00"], True),  # comma: its own minute key, as line by line
    ],
)
def test_batch_fast_path_matches_line_by_line(stamps, fast_path):
    """A clean batch is aggregated with C-level passes; its counts and latest calls equal the line-by-line path.
    Stamps outside the fast shape send the whole batch line by line, same results."""
    ids = {"a": 1, "b": 2}
    lines = [
        json.dumps({"status": status, "timestamp": stamp, "endpoint": endpoint, "ms": 3}).encode()
        for n, stamp in enumerate(stamps * 3)
        for endpoint, status in [(("a", "b")[n % 2], (200, 404, 503, 504)[n % 4])]
    ]
    fast = CallParser(ids)._fast(lines, len(lines))
    slow = CallParser(ids)._slow(lines, 1)
    assert (fast is not None) == fast_path
    batches = list(CallParser(ids).batches(lines))
    for batch in [fast, batches[0]] if fast else batches:
        assert batch.accepted == slow.accepted == len(lines)
        assert batch.counts == slow.counts
        assert batch.last_calls == slow.last_calls
        assert batch.errors == []


@pytest.mark.parametrize(
    "bad",
    [
        {"timestamp": "2026-11-27T10:15:60+01:00", "endpoint": "a", "status": 200},
        {"timestamp": "2026-11-27T10:15:00.1٣3+01:00", "endpoint": "a", "status": 200},
        {"timestamp": "2026-11-27T10:15:00.123 +01:00", "endpoint": "a", "status": 200},
        {"timestamp": "2026-11-27X10:15:00+01:00", "endpoint": "a", "status": 200},
        {"timestamp": "2026-11-27T10:15:00+01:00x", "endpoint": "a", "status": 200},
        {"timestamp": "2026-11-27T10:15:00+01:00", "endpoint": "c", "status": 200},
        {"timestamp": "2026-11-27T10:15:00+01:00", "endpoint": ["a"], "status": 200},
        {"timestamp": "2026-11-27T10:15:00+01:00", "endpoint": "a", "status": 200.0},
        {"timestamp": "2026-11-27T10:15:00+01:00", "endpoint": "a", "status": True},
        {"timestamp": "2026-11-27T10:15:00+01:00", "endpoint": "a", "status": 600},
        {"timestamp": 1764234900, "endpoint": "a", "status": 200},
        {"endpoint": "a", "status": 200},
        ["2026-11-27T10:15:00+01:00", "a", 200],
    ],
)
def test_batch_with_a_bad_line_reports_it(bad):
    """One bad line in a batch: the batch goes line by line, the bad line is reported with its number."""
    good = json.dumps({"timestamp": "2026-11-27T10:15:00.456+01:00", "endpoint": "a", "status": 200}).encode()
    lines = [good, good, json.dumps(bad).encode(), b"  ", good]
    assert CallParser({"a": 1})._fast(lines, 5) is None
    (batch,) = CallParser({"a": 1}).batches(lines)
    assert batch.accepted == 3
    assert [n for n, _ in batch.errors] == [3]
    assert batch.last_line == 5

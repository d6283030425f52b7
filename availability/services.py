"""Writes of the availability app: call ingestion into counters, and the rollup of old fine-grained counters."""

import datetime as dt
import hashlib
import json
import os
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from operator import add, itemgetter

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from tokens import validity
from tokens.models import Endpoint

from .models import DayCounter, EndpointActivity, HourCounter, MinuteCounter, RetentionMark
from .selectors import endpoint_ids

# (endpoint_id, epoch minute, status) -> count
MinuteKey = tuple[int, int, int]


class LineError(ValueError):
    pass


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # kept only up to `max_errors`


SECONDS = frozenset(f"{n:02d}" for n in range(60))
COLON_SECONDS = frozenset(f":{n:02d}" for n in range(60))
STATUSES = frozenset(range(100, 600))
BATCH_LINES = 1000
_ENDPOINT, _STATUS, _STAMP = itemgetter("endpoint"), itemgetter("status"), itemgetter("timestamp")
_COLON_SECONDS_OF, _SECONDS_OF, _DOT_OF = (
    itemgetter(slice(16, 19)),
    itemgetter(slice(17, 19)),
    itemgetter(slice(19, 20)),
)
DIGITS = frozenset("0123456789")
NOT_DIGIT = frozenset(["", "Z", "z", "+", "-"])  # what may follow the fraction


class OverlongLine(bytes):
    """Stands for a line longer than the limit (its bytes were skipped unread): rejected with its line number."""

    limit: int


class LineReader:
    """The lines of a binary stream, read incrementally, never more than `max_line_bytes + 1` bytes per read.

    A line longer than `max_line_bytes` (its end-of-line included) is not kept: the rest of it is read and dropped
    in bounded pieces, and an OverlongLine stands for it, so that the parser rejects it with its line number like
    any other bad line. `offset` is the number of bytes consumed so far (the end of the last line yielded);
    `limit`, if set, stops reading at that offset; `digest`, if set, is fed every byte read.
    """

    SKIP_BYTES = 1 << 16

    def __init__(
        self, readline, *, max_line_bytes: int, offset: int = 0, limit: int | None = None, digest=None
    ):
        self.readline = readline
        self.max_line_bytes = max_line_bytes
        self.offset = offset
        self.limit = limit
        self.digest = digest

    def _read(self, size: int) -> bytes:
        if self.limit is not None:
            size = min(size, self.limit - self.offset)
            if size <= 0:
                return b""
        data = self.readline(size)
        self.offset += len(data)
        if self.digest is not None:
            self.digest.update(data)
        return data

    def __iter__(self):
        read, longest = self._read, self.max_line_bytes
        while line := read(longest + 1):
            if len(line) <= longest:
                yield line
                continue
            while not line.endswith(b"\n") and (line := read(self.SKIP_BYTES)):
                pass
            overlong = OverlongLine(b"\x00")
            overlong.limit = longest
            yield overlong


@dataclass
class Batch:
    """The outcome of a batch of lines: counts per (endpoint, minute, status), latest call per endpoint, errors."""

    last_line: int
    counts: Counter
    last_calls: dict[int, float]
    accepted: int
    errors: list[tuple[int, str]]


class CallParser:
    """Validates JSON Lines records and turns each into (endpoint_id, epoch second, status).

    Lines go in batches of BATCH_LINES. A clean batch (every line one JSON object with a known endpoint, an integer
    status of 100-599 and a `YYYY-MM-DDTHH:MM:SS[offset]` timestamp) is decoded by one json.loads and aggregated with
    C-level passes (map, Counter), each distinct minute string being parsed once (fractional seconds of one width
    included); any other batch goes line by line
    (`check`), which yields the same counts and reports each bad line.
    """

    def __init__(self, ids: dict[str, int] | None = None):
        self.ids = ids if ids is not None else endpoint_ids()
        self.tz = validity.local_tz()
        self.minute_bases: dict[str, float] = {}  # "YYYY-MM-DDTHH:MM" + offset -> epoch of its second 00
        # Lines are decoded in batches, joined with a random sentinel that no line can contain: the batch is
        # trusted only if sentinels and values alternate exactly (so each line was exactly one JSON value).
        self.sentinel = "sep-" + secrets.token_hex(16)
        self.joiner = f',"{self.sentinel}",'.encode()

    def batches(self, lines: Iterable[bytes | str], size: int = BATCH_LINES, *, first_line: int = 1):
        """Batch outcomes, streaming (`size` lines at a time); lines are numbered from `first_line`."""
        source = iter(lines)
        number = first_line - 1
        while chunk := list(islice(source, size)):
            first = number + 1
            number += len(chunk)
            if set(map(type, chunk)) != {bytes}:
                chunk = [line.encode() if isinstance(line, str) else line for line in chunk]
            yield self._fast(chunk, number) or self._slow(chunk, first)

    def _fast(self, chunk: list[bytes], last_line: int) -> Batch | None:
        values = self.decode_batch(chunk)
        if values is None or set(map(type, values)) != {dict}:
            return None
        try:
            stamps = list(map(_STAMP, values))
            statuses = list(map(_STATUS, values))
            ids = list(
                map(self.ids.__getitem__, map(_ENDPOINT, values))
            )  # unknown: KeyError, unhashable: TypeError
        except (KeyError, TypeError):
            return None
        if (
            set(map(type, statuses)) != {int}
            or not STATUSES.issuperset(statuses)
            or set(map(type, stamps)) != {str}
            or not COLON_SECONDS.issuperset(map(_COLON_SECONDS_OF, stamps))
        ):
            return None
        cut = 19  # keys: the minute with its offset, seconds (and fraction) removed
        if "." in (dots := set(map(_DOT_OF, stamps))):  # fractions: in every stamp, one width, ASCII digits
            if dots != {"."}:
                return None
            width = len(stamps[0]) - 20 - len(stamps[0][20:].lstrip("0123456789"))
            digits = "".join(map(itemgetter(slice(20, 20 + width)), stamps))
            if (
                not width
                or len(digits) != width * len(stamps)
                or not DIGITS.issuperset(digits)
                or not NOT_DIGIT.issuperset(map(itemgetter(slice(20 + width, 21 + width)), stamps))
            ):
                return None
            cut = 20 + width
        keys = [s[:16] + s[cut:] for s in stamps]
        bases = self.minute_bases
        if new_keys := set(keys).difference(bases):
            # Stamps of one key differ only by seconds 00-59 and fraction digits: checking one checks them all.
            sample = dict(zip(keys, stamps, strict=True))
        for key in new_keys:
            if key[16:17] == ".":  # a fraction of another width: line by line
                return None
            stamp = sample[key]
            try:
                base = self._seconds(stamp, stamp[:17] + "00" + stamp[cut:]) if stamp[10] in "Tt " else None
            except LineError:
                base = None
            if base is None:
                return None
            if len(bases) > 100_000:
                bases.clear()
            bases[key] = base
        moments = list(map(add, map(bases.__getitem__, keys), map(int, map(_SECONDS_OF, stamps))))
        by_key = Counter(zip(ids, keys, statuses, strict=True))
        counts = Counter()
        for (endpoint_id, key, status), n in by_key.items():
            counts[(endpoint_id, int(bases[key] // 60), status)] += n
        latest = sorted(zip(moments, ids, strict=True))  # already sorted for a chronological log: linear
        last_calls = dict(zip(map(itemgetter(1), latest), map(itemgetter(0), latest), strict=True))
        return Batch(last_line, counts, last_calls, len(values), [])

    def _slow(self, chunk: list[bytes], first: int) -> Batch:
        batch = Batch(first + len(chunk) - 1, Counter(), {}, 0, [])
        last_calls = batch.last_calls
        for number, line in enumerate(chunk, start=first):
            if not line.strip():
                continue
            try:
                endpoint_id, seconds, status = self.parse(line)
            except LineError as exc:
                batch.errors.append((number, str(exc)))
                continue
            batch.counts[(endpoint_id, int(seconds // 60), status)] += 1
            if seconds > last_calls.get(endpoint_id, -1e18):
                last_calls[endpoint_id] = seconds
            batch.accepted += 1
        return batch

    def parse(self, line: bytes | str) -> tuple[int, float, int]:
        if type(line) is OverlongLine:
            raise LineError(f"ligne trop longue (plus de {line.limit} octets)")
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise LineError("JSON invalide") from None
        return self.check(record)

    def decode_batch(self, lines: list[bytes]) -> list | None:
        """The decoded values of `lines` (bytes) in one json.loads, or None to decode line by line."""
        try:
            values = json.loads(b"[" + self.joiner.join(lines) + b"]")
        except (ValueError, UnicodeDecodeError):
            return None
        if len(values) != 2 * len(lines) - 1 or values[1::2].count(self.sentinel) != len(lines) - 1:
            return None
        return values[::2]

    def check(self, record) -> tuple[int, float, int]:
        if type(record) is not dict:
            raise LineError("un objet JSON est attendu")
        endpoint = record.get("endpoint")
        endpoint_id = self.ids.get(endpoint) if type(endpoint) is str else None
        if endpoint_id is None:
            raise LineError(f"endpoint inconnu : {str(endpoint)[:100]!r}")
        status = record.get("status")
        if type(status) is not int or not 100 <= status <= 599:
            raise LineError(f"code HTTP invalide : {str(status)[:20]!r} (entier de 100 à 599 attendu)")
        stamp = record.get("timestamp")
        if type(stamp) is not str or len(stamp) < 16 or stamp[10] not in "Tt ":
            raise LineError(f"horodatage invalide : {str(stamp)[:40]!r} (ISO 8601 attendu)")
        # Fast path for YYYY-MM-DDTHH:MM:SS[.fff][offset]: one full parse per distinct minute and offset.
        if len(stamp) >= 20 and stamp[16] == ":" and stamp[17:19] in SECONDS:
            rest = stamp[19:]
            if rest[:1] == ".":
                i = 1
                while i < len(rest) and rest[i] in "0123456789":
                    i += 1
                rest = rest[i:] if i > 1 else "!"  # "!" : a dot without digits, left to the full parse
            key = stamp[:16] + rest
            base = self.minute_bases.get(key)
            if base is None:
                base = self._seconds(stamp, stamp[:17] + "00" + rest)
                if len(self.minute_bases) > 100_000:
                    self.minute_bases.clear()
                self.minute_bases[key] = base
            return endpoint_id, base + int(stamp[17:19]), status
        return endpoint_id, self._seconds(stamp, stamp), status

    def _seconds(self, stamp: str, text: str) -> float:
        try:
            dt.datetime.fromisoformat(stamp)  # the line itself must be valid
            moment = dt.datetime.fromisoformat(text)
            if moment.tzinfo is None:  # no offset: read in TIME_ZONE, as import_tokens does
                moment = moment.replace(tzinfo=self.tz)
            seconds = moment.timestamp()
        except (ValueError, OverflowError):
            raise LineError(f"horodatage invalide : {stamp[:40]!r} (ISO 8601 attendu)") from None
        return seconds


def calls_ingest(
    *,
    lines: Iterable[bytes | str],
    on_error: Callable[[int, str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_lines: int | None = None,
    max_errors: int = 0,
    first_line: int = 1,
    on_commit: Callable[[IngestResult, int, bool], None] | None = None,
) -> IngestResult:
    """Stream JSON Lines records into the counters, aggregating in memory per chunk (constant memory).

    Blank lines are ignored; each bad line is reported through `on_error(line_number, reason)` and skipped.
    Each chunk is committed in its own transaction (all of its counters or none), together with whatever
    `on_commit(result so far, last line number, final)` writes: for a file, how far it has been counted. With
    `on_commit`, the end of the input is committed even without counts (final=True).
    """
    chunk_lines = chunk_lines or settings.AVAILABILITY_INGEST_CHUNK_LINES
    result = IngestResult()
    counts: Counter = Counter()
    last_calls: dict[int, float] = {}
    in_chunk = 0
    number = first_line - 1
    for batch in CallParser().batches(lines, min(BATCH_LINES, chunk_lines), first_line=first_line):
        number = batch.last_line
        _collect(result, batch, counts, last_calls, max_errors, on_error)
        in_chunk += batch.accepted
        if in_chunk >= chunk_lines:
            also = (lambda n=number: on_commit(result, n, False)) if on_commit else None  # noqa: E731
            counters_add(counts=counts, last_calls=last_calls, also=also)
            counts, last_calls, in_chunk = Counter(), {}, 0
        if progress is not None:
            progress(number, result.rejected)
    if counts or on_commit:
        also = (lambda: on_commit(result, number, True)) if on_commit else None  # noqa: E731
        counters_add(counts=counts, last_calls=last_calls, also=also)
    if progress is not None:
        progress(number, result.rejected)
    return result


class AlreadyIngesting(RuntimeError):
    """Another run is counting the same content at the same time."""


@dataclass
class FileIngestOutcome:
    """What a run of `ingest_calls` did: this run's result, and the totals of the content over every run."""

    result: IngestResult
    fingerprint: str
    resumed_at_line: int = 0  # 0: started from the beginning
    already_done: bool = False
    total_accepted: int = 0
    total_rejected: int = 0


def _file_digest(source, size: int) -> str:
    digest = hashlib.sha256()
    remaining = size
    while remaining > 0 and (block := source.read(min(remaining, 1 << 20))):
        digest.update(block)
        remaining -= len(block)
    return digest.hexdigest()


def calls_file_ingest(
    *,
    source,
    name: str = "",
    on_error: Callable[[int, str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_lines: int | None = None,
) -> FileIngestOutcome:
    """Ingest a seekable binary file so that no call is ever counted twice, whatever crashes in between.

    The file is identified by the SHA-256 of its first `size` bytes (its size when the run starts: a file still
    being appended to is counted up to there; what is appended later makes it another content). Each chunk's
    counters and the offset reached are committed in one transaction (IngestedFile), so that a run after a crash
    resumes after the last committed chunk, and a content already completed adds nothing.
    """
    from .models import IngestedFile

    size = os.fstat(source.fileno()).st_size
    fingerprint = _file_digest(source, size)
    record, _ = IngestedFile.objects.get_or_create(
        fingerprint=fingerprint, defaults={"size": size, "name": name[:255]}
    )
    outcome = FileIngestOutcome(IngestResult(), fingerprint)
    if record.completed_at is not None:
        outcome.already_done = True
        outcome.total_accepted, outcome.total_rejected = record.accepted, record.rejected
        return outcome
    source.seek(record.committed_offset)
    reader = LineReader(
        source.readline,
        max_line_bytes=settings.AVAILABILITY_INGEST_MAX_LINE_BYTES,
        offset=record.committed_offset,
        limit=size,
    )
    if record.committed_offset:
        outcome.resumed_at_line = record.committed_lines + 1
    base = {"offset": record.committed_offset, "accepted": record.accepted, "rejected": record.rejected}

    def on_commit(result: IngestResult, last_line: int, final: bool) -> None:
        row = IngestedFile.objects.select_for_update().get(pk=record.pk)
        if row.committed_offset != base["offset"] or row.completed_at is not None:
            raise AlreadyIngesting(fingerprint)
        row.committed_offset = base["offset"] = reader.offset
        row.committed_lines = last_line
        row.accepted = base["accepted"] + result.accepted
        row.rejected = base["rejected"] + result.rejected
        if final:
            row.completed_at = timezone.now()
        row.save()
        outcome.total_accepted, outcome.total_rejected = row.accepted, row.rejected

    outcome.result = calls_ingest(
        lines=reader,
        on_error=on_error,
        progress=progress,
        chunk_lines=chunk_lines,
        first_line=record.committed_lines + 1,
        on_commit=on_commit,
    )
    return outcome


def calls_stream_ingest(
    *,
    source,
    name: str = "",
    on_error: Callable[[int, str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_lines: int | None = None,
) -> FileIngestOutcome:
    """Ingest a binary stream that cannot be read twice (standard input) in one transaction: a run that fails
    counts nothing, and the stream's SHA-256, recorded in the same transaction, makes a content already ingested
    (as a file or a stream) add nothing: everything is then rolled back."""
    from .models import IngestedFile

    digest = hashlib.sha256()
    reader = LineReader(
        source.readline, max_line_bytes=settings.AVAILABILITY_INGEST_MAX_LINE_BYTES, digest=digest
    )
    with transaction.atomic():
        result = calls_ingest(lines=reader, on_error=on_error, progress=progress, chunk_lines=chunk_lines)
        fingerprint = digest.hexdigest()
        outcome = FileIngestOutcome(
            result, fingerprint, total_accepted=result.accepted, total_rejected=result.rejected
        )
        record, created = IngestedFile.objects.select_for_update().get_or_create(
            fingerprint=fingerprint,
            defaults={
                "size": reader.offset,
                "name": name[:255],
                "committed_offset": reader.offset,
                "committed_lines": 0,
                "accepted": result.accepted,
                "rejected": result.rejected,
                "completed_at": timezone.now(),
            },
        )
        if not created:
            transaction.set_rollback(True)
            if record.completed_at is None:
                raise AlreadyIngesting(fingerprint)
            outcome.already_done = True
            outcome.result = IngestResult()
            outcome.total_accepted, outcome.total_rejected = record.accepted, record.rejected
    return outcome


def _collect(
    result: IngestResult, batch: Batch, counts: Counter, last_calls: dict, max_errors: int, on_error=None
):
    """Add a batch's outcome to the running result and to the chunk's counts."""
    for number, reason in batch.errors:
        result.rejected += 1
        if len(result.errors) < max_errors:
            result.errors.append((number, reason))
        if on_error is not None:
            on_error(number, reason)
    if batch.accepted:
        result.accepted += batch.accepted
        counts.update(batch.counts)
        for endpoint_id, seconds in batch.last_calls.items():
            if seconds > last_calls.get(endpoint_id, -1e18):
                last_calls[endpoint_id] = seconds


def counters_add(
    *,
    counts: dict[MinuteKey, int],
    last_calls: dict[int, float] | None = None,
    also: Callable[[], None] | None = None,
) -> None:
    """Add minute counts (and the hour and day counts derived from them) in one transaction, with `also()`.

    Upserts increment (`count = count + EXCLUDED.count`), so concurrent ingests never lose an update; rows are
    written in key order so that concurrent transactions lock them in the same order (no deadlock), and a
    deadlock or serialization failure anyway retries the whole chunk, which is safe since it committed nothing.
    """
    tz = validity.local_tz()
    hours: dict[tuple[int, int, int], int] = defaultdict(int)
    days: dict[tuple[int, dt.date, int], int] = defaultdict(int)
    day_of_hour: dict[int, dt.date] = {}
    for (endpoint_id, minute, status), n in counts.items():
        hour = minute // 60
        hours[(endpoint_id, hour, status)] += n
        # Day of the minute in TIME_ZONE; cached per (hour, quarter) since some zones have :30/:45 offsets.
        slot = minute // 15
        day = day_of_hour.get(slot)
        if day is None:
            day = day_of_hour[slot] = dt.datetime.fromtimestamp(slot * 900, tz).date()
        days[(endpoint_id, day, status)] += n
    for attempt in range(3):
        try:
            with transaction.atomic():
                _upsert(MinuteCounter, "minute", "bigint", counts)
                _upsert(HourCounter, "hour", "integer", hours)
                _upsert(DayCounter, "day", "date", days)
                if last_calls:
                    _touch_activity(last_calls)
                if also is not None:
                    also()
            return
        except DatabaseError as exc:
            if attempt == 2 or getattr(getattr(exc, "__cause__", None), "sqlstate", None) not in (
                "40P01",  # deadlock_detected
                "40001",  # serialization_failure
            ):
                raise
            time.sleep(0.05 * (attempt + 1))


def _array(values) -> str:
    """A PostgreSQL array literal of integers or dates: one text parameter instead of a list adapted item by item."""
    return "{" + ",".join(map(str, values)) + "}"


def _upsert(model, column: str, pg_type: str, counts: dict) -> None:
    if not counts:
        return
    table = model._meta.db_table
    rows = sorted(counts.items())
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            keys = [k for k, _ in rows]
            cursor.execute(
                f"""INSERT INTO {table} (endpoint_id, {column}, status, "count")
                SELECT * FROM unnest(%s::bigint[], %s::{pg_type}[], %s::smallint[], %s::bigint[])
                ON CONFLICT (endpoint_id, {column}, status)
                DO UPDATE SET "count" = {table}."count" + EXCLUDED."count" """,  # noqa: S608 (identifiers are ours)
                [
                    _array(k[0] for k in keys),
                    _array(k[1] for k in keys),
                    _array(k[2] for k in keys),
                    _array(n for _, n in rows),
                ],
            )
        else:
            adapt = connection.ops.adapt_datefield_value if pg_type == "date" else (lambda v: v)
            cursor.executemany(
                f"""INSERT INTO {table} (endpoint_id, {column}, status, "count") VALUES (%s, %s, %s, %s)
                ON CONFLICT (endpoint_id, {column}, status)
                DO UPDATE SET "count" = "count" + excluded."count" """,  # noqa: S608
                [(e, adapt(b), s, n) for (e, b, s), n in rows],
            )


def _touch_activity(last_calls: dict[int, float]) -> None:
    table = EndpointActivity._meta.db_table
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    adapt = connection.ops.adapt_datetimefield_value
    rows = [
        (e, adapt(dt.datetime.fromtimestamp(s, dt.UTC).replace(microsecond=0)))
        for e, s in sorted(last_calls.items())
    ]
    with connection.cursor() as cursor:
        cursor.executemany(
            f"""INSERT INTO {table} (endpoint_id, last_call_at) VALUES (%s, %s)
            ON CONFLICT (endpoint_id) DO UPDATE SET last_call_at = {greatest}({table}.last_call_at, excluded.last_call_at)""",  # noqa: S608
            rows,
        )


def counters_rollup(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Drop minute and hour counters beyond their retention; the coarser counters already hold their sums.

    Records first how far back each resolution stays complete (RetentionMark), then deletes per endpoint, oldest
    first, a day (minutes) or a week (hours) of buckets per statement, so that a reader never uses a resolution where rows are missing. Safe to run twice or concurrently.
    """
    now = now or timezone.now()
    epoch_minute = int(now.timestamp() // 60)
    minute_from = epoch_minute - settings.AVAILABILITY_MINUTE_RETENTION_DAYS * 1440
    hour_from = epoch_minute // 60 - settings.AVAILABILITY_HOUR_RETENTION_DAYS * 24
    deleted = {}
    for resolution, model, column, cutoff, step in (
        (RetentionMark.Resolution.MINUTE, MinuteCounter, "minute", minute_from, 1440),
        (RetentionMark.Resolution.HOUR, HourCounter, "hour", hour_from, 24 * 7),
    ):
        with transaction.atomic():
            mark, created = RetentionMark.objects.select_for_update().get_or_create(
                resolution=resolution, defaults={"complete_from": cutoff}
            )
            if not created and mark.complete_from < cutoff:
                mark.complete_from = cutoff
                mark.save(update_fields=["complete_from", "updated_at"])
        total = 0
        for endpoint_id in Endpoint.objects.values_list("id", flat=True):
            # Oldest first, `step` buckets per statement (its own short transaction), along the primary key.
            rows = model.objects.filter(endpoint_id=endpoint_id)
            oldest = rows.order_by(column).values_list(column, flat=True)
            while (first := oldest.first()) is not None and first < cutoff:
                total += rows.filter(**{f"{column}__lt": min(first + step, cutoff)}).delete()[0]
        deleted[column] = total
    return deleted


def calls_batch_ingest(
    *, lines: Iterable[bytes | str], token_id: int | None, idempotency_key: str = ""
) -> tuple[IngestResult, bool]:
    """POST /api/watchdoge/calls: one transaction for the whole batch; with an idempotency key, a batch already
    received from the same token with the same key is not counted again and its first result is returned (keys
    are per token: another token's key is never replayed, nor refused). Returns (result, replayed)."""
    from django.db import IntegrityError

    from .models import IngestBatch

    max_errors = settings.AVAILABILITY_INGEST_MAX_ERRORS_SHOWN
    result = IngestResult()
    counts: Counter = Counter()
    last_calls: dict[int, float] = {}
    for batch in CallParser().batches(lines):
        _collect(result, batch, counts, last_calls, max_errors)
    if idempotency_key:
        try:
            with transaction.atomic():
                IngestBatch.objects.create(
                    key=idempotency_key,
                    token_id=token_id,
                    accepted=result.accepted,
                    rejected=result.rejected,
                    errors=[list(e) for e in result.errors],
                )
                counters_add(counts=counts, last_calls=last_calls)
        except IntegrityError:
            first = IngestBatch.objects.get(token_id=token_id, key=idempotency_key)
            return IngestResult(first.accepted, first.rejected, [tuple(e) for e in first.errors]), True
    else:
        counters_add(counts=counts, last_calls=last_calls)
    return result, False

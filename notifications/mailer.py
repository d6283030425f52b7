"""What every outbox of emails shares (reminders, evolution notices, exposure alerts, deadline alerts): the retry
backoff, the lease margin, one mail connection per delivery run, the one way a message is sent on it, and the one
delivery loop. One definition each.

The loop (`deliver`): claim due rows of a tokenmgr.outbox.OutboxMessage table (and rows whose worker died) with
SELECT … FOR UPDATE SKIP LOCKED under a lease, in a short transaction; send each message on the run's one connection,
outside any transaction; record each outcome right after its send (a killed worker re-sends at most the one message
in flight, under the same Message-ID): `sent` with its Message-ID, or a failed attempt retried after `retry_delay`,
`failed` for good after REMINDER_MAX_ATTEMPTS. What differs between kinds is an `EmailOutbox`: how a message is
built, what a batch reads once, why a row is no longer to be sent, what is recorded with a sent row, and what
follows a batch.
"""

import contextlib
import datetime as dt
import functools
import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db.models import F, QuerySet
from django.utils import timezone

from tokenmgr import outbox
from tokenmgr.mail import build_email
from tokenmgr.outbox import OutboxMessage, OutboxStatus

from .emails import message_id

logger = logging.getLogger(__name__)


def retry_delay(attempts: int) -> dt.timedelta:
    """Exponential backoff after `attempts` failures: base, base·factor, base·factor², … capped."""
    return outbox.backoff(
        attempts,
        base=settings.REMINDER_RETRY_BASE_SECONDS,
        factor=settings.REMINDER_RETRY_FACTOR,
        cap=settings.REMINDER_RETRY_MAX_SECONDS,
    )


def lease_margin() -> dt.timedelta:
    """No send starts this close to the end of its message's lease: a send never outlives its claim."""
    return dt.timedelta(seconds=settings.REMINDER_LEASE_SECONDS / 4)


def send(conn, message) -> None:
    """Send one message on the run's open connection (public API: send_messages); raises when it was not
    accepted."""
    if not conn.send_messages([message]):
        raise RuntimeError("the mail backend accepted no message")


def outbox_email(
    prefix: str, context: dict, *, row: OutboxMessage, key: str, connection=None, headers: dict | None = None
) -> EmailMessage:
    """The email of the outbox row `row` (render_email(prefix, context)) to its recipient, under the Message-ID of
    `key`.`row.pk`: the same at every attempt."""
    message = build_email(
        prefix,
        context,
        to=[row.email],
        headers={"Message-ID": message_id(f"{key}.{row.pk}"), **(headers or {})},
    )
    message.connection = connection
    return message


class Mailer:
    """A delivery run's one mail connection, opened on first use and reopened after a failed send."""

    def __init__(self, conn=None):
        self.conn = conn or get_connection(timeout=settings.EMAIL_TIMEOUT or lease_margin().total_seconds())
        self.is_open = False
        self.ours = False

    def ensure_open(self) -> str:
        """'' once open, or the error that kept it closed."""
        if self.is_open:
            return ""
        try:
            self.ours = self.conn.open() is not False  # False: it was already open (not ours to close)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        self.is_open = True
        return ""

    def close(self) -> None:
        if self.is_open and self.ours:
            with contextlib.suppress(Exception):  # a failed QUIT does not undo what was accepted
                self.conn.close()
        self.is_open = self.ours = False


@dataclass
class DeliveryResult:
    """Counts of outbox rows (one message each) handled by a delivery run."""

    sent: int = 0
    skipped: int = 0  # cancelled: no longer to be sent (the kind says why, e.g. the token became ineligible)
    failed: int = 0  # attempts that failed in this run (retried later, or `failed` for good)
    gave_up: int = 0  # rows that reached REMINDER_MAX_ATTEMPTS in this run

    def __iadd__(self, other: "DeliveryResult") -> "DeliveryResult":
        self.sent += other.sent
        self.skipped += other.skipped
        self.failed += other.failed
        self.gave_up += other.gave_up
        return self


def _by_due_time(rows: QuerySet) -> QuerySet:
    return rows.order_by("next_attempt_at", "id")


def _no_context(rows: list, now: dt.datetime) -> None:
    return None


def _to_send(row, context) -> str:
    return ""


def _nothing_more(row, context) -> dict:
    return {}


@dataclass(frozen=True)
class EmailOutbox:
    """One kind of outbox email: its table and what only it decides; `deliver` does the rest."""

    model: type[OutboxMessage]
    label: str  # a row in the logs: "reminder message"
    # (row, batch context, connection) -> the message to send, its Message-ID header set (the same at every attempt)
    build: Callable[[Any, Any, Any], EmailMessage]
    rows: Callable[[QuerySet], QuerySet] = _by_due_time  # how claimed rows are read (related rows, order)
    context: Callable[[list, dt.datetime], Any] = _no_context  # read once per batch, before its first send
    # (row, context) -> why it is no longer to be sent ('' to send it): cancelled, its attempt given back
    cancel: Callable[[Any, Any], str] = _to_send
    sent_fields: Callable[[Any, Any], dict] = _nothing_more  # (row, context) -> recorded with a sent row
    settled: Callable[[list], Any] | None = None  # after each batch, with all its claimed rows

    @functools.cached_property
    def outbox(self) -> outbox.Outbox:
        return outbox.Outbox(
            model=self.model,
            pending=OutboxStatus.PENDING,
            sending=OutboxStatus.SENDING,
            lease_seconds=lambda: settings.REMINDER_LEASE_SECONDS,
            touched="updated_at",
        )


def claim(kind: EmailOutbox, *, worker: str, limit: int, now: dt.datetime | None = None) -> list:
    """Claim up to `limit` rows of `kind` for `worker` (tokenmgr.outbox: one short committed transaction, SKIP
    LOCKED, crashed workers' rows first, one more attempt counted), each `sending` until now +
    REMINDER_LEASE_SECONDS; returns them as `kind.rows` reads them."""
    ids = kind.outbox.claim(worker=worker, limit=limit, now=now)
    if not ids:
        return []
    return list(kind.rows(kind.outbox.claimed(ids, worker=worker)))


def _record_failure(
    kind: EmailOutbox, row, error: str, worker: str, now: dt.datetime, result: DeliveryResult
) -> None:
    """A failed attempt (counted by the claim): retry after the backoff, or `failed` for good."""
    at = max(timezone.now(), now)  # a run acting at a later `now` does not take the row again
    result.failed += 1
    if row.attempts >= settings.REMINDER_MAX_ATTEMPTS:
        fields: dict = {"status": OutboxStatus.FAILED}
        result.gave_up += 1
        logger.error("%s %s failed for good after %d attempts: %s", kind.label, row.pk, row.attempts, error)
    else:
        fields = {"status": OutboxStatus.PENDING, "next_attempt_at": at + retry_delay(row.attempts)}
        logger.warning("%s %s attempt %d failed: %s", kind.label, row.pk, row.attempts, error)
    kind.outbox.settle(row.pk, worker=worker, last_error=error[:2000], updated_at=timezone.now(), **fields)


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def deliver_claimed(
    kind: EmailOutbox, rows: list, now: dt.datetime, mailer: Mailer, worker: str
) -> DeliveryResult:
    """Send the claimed rows one by one, each outcome committed right after its send, then `kind.settled`."""
    result = DeliveryResult()
    settle = functools.partial(kind.outbox.settle, worker=worker)
    live = []
    for row in rows:
        if row.attempts > settings.REMINDER_MAX_ATTEMPTS:  # claimed again and again by workers that died
            result.failed += 1
            result.gave_up += 1
            logger.error("%s %s: its workers died %d times, given up", kind.label, row.pk, row.attempts)
            settle(row.pk, status=OutboxStatus.FAILED, last_error="envoi interrompu trop de fois")
        else:
            live.append(row)
    context = kind.context(live, now)
    plans = []
    for row in live:
        reason = kind.cancel(row, context)
        if reason:  # nothing was attempted: the claim's attempt is given back
            result.skipped += 1
            settle(row.pk, status=OutboxStatus.CANCELLED, last_error=reason, attempts=F("attempts") - 1)
        else:
            plans.append(row)

    margin = lease_margin()
    for i, row in enumerate(plans):
        if timezone.now() + margin >= row.lease_until:  # too slow: let another worker take the rest
            kind.outbox.release([r.pk for r in plans[i:]], worker=worker)
            logger.warning("%s delivery: lease running out, %d released", kind.label, len(plans) - i)
            break
        open_error = mailer.ensure_open()
        if open_error:  # SMTP down: the rest of the claim goes back to pending, with backoff
            for rest in plans[i:]:
                _record_failure(kind, rest, open_error, worker, now, result)
            break
        try:
            email = kind.build(row, context, mailer.conn)
        except Exception as exc:
            _record_failure(kind, row, _error(exc), worker, now, result)
            continue
        try:
            send(mailer.conn, email)
        except Exception as exc:
            if not isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPDataError):
                mailer.close()  # the connection may be broken: the next message reopens it
            _record_failure(kind, row, _error(exc), worker, now, result)
            continue
        sent_at = timezone.now()
        result.sent += 1
        settle(
            row.pk,
            status=OutboxStatus.SENT,
            sent_at=sent_at,
            message_id=email.extra_headers["Message-ID"],
            last_error="",
            updated_at=sent_at,
            **kind.sent_fields(row, context),
        )
    if kind.settled is not None:
        kind.settled(rows)
    return result


def deliver(
    kind: EmailOutbox,
    *,
    now: dt.datetime | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> DeliveryResult:
    """Send the due rows of `kind` (and those crashed workers left behind), batch by batch, until none is left, on
    one mail connection. Each batch is claimed at `now` (default: the time it starts)."""
    batch_size = batch_size or settings.REMINDER_DELIVERY_BATCH
    worker = outbox.worker_id()
    total = DeliveryResult()
    done = 0
    mailer = Mailer()
    try:
        while max_batches is None or done < max_batches:
            claim_at = now or timezone.now()
            rows = claim(kind, worker=worker, limit=batch_size, now=claim_at)
            if not rows:
                break
            total += deliver_claimed(kind, rows, claim_at, mailer, worker)
            done += 1
    finally:
        mailer.close()
    if total.sent or total.failed or total.skipped:
        logger.info(
            "%ss delivered: %d sent, %d skipped, %d failed",
            kind.label,
            total.sent,
            total.skipped,
            total.failed,
        )
    return total

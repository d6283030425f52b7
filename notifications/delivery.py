"""Delivery of the queued reminder messages: claim, render, send, settle.

Delivery claims due messages with SELECT … FOR UPDATE SKIP LOCKED under a lease (status `sending`), so several
workers never send the same message, and records each message's outcome right after its send, so a killed worker
re-sends at most one. After each batch the ledger rows of its messages are settled from their messages
(reminders_settle). What an email says is decided here, from the data as it is at sending time (the token's
pending request, what its renewal form will be pre-filled with), not when the sweep queued it.
"""

import contextlib
import datetime as dt
import functools
import logging
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import get_connection
from django.db import transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, Subquery, Value, prefetch_related_objects
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format
from sesame.utils import get_query_string

from portal.models import WebhookEndpoint
from portal.webhooks import token_payload, webhook_emit
from tokenmgr import outbox
from tokens import prefill, validity
from tokens.models import Origin, Token

from . import emails, pending, smtp_fastpath
from .models import OPEN_STATUSES, Reminder, ReminderMessage, ReminderStatus
from .recipients import link_users_get_or_create, magic_link_scope, recipients_for
from .rules import ineligibility, reminders_declined_token_ids

logger = logging.getLogger(__name__)


@dataclass
class DeliveryResult:
    """Counts of messages (one per reminder and recipient)."""

    sent: int = 0
    skipped: int = (
        0  # cancelled: the token became ineligible, or the recipient is no longer one of its contacts
    )
    failed: int = 0  # attempts that failed in this run (retried later, or `failed` for good)
    gave_up: int = 0  # messages that reached REMINDER_MAX_ATTEMPTS in this run

    def __iadd__(self, other: "DeliveryResult") -> "DeliveryResult":
        self.sent += other.sent
        self.skipped += other.skipped
        self.failed += other.failed
        self.gave_up += other.gave_up
        return self


def retry_delay(attempts: int) -> dt.timedelta:
    """Exponential backoff after `attempts` failures: base, base·factor, base·factor², … capped."""
    return outbox.backoff(
        attempts,
        base=settings.REMINDER_RETRY_BASE_SECONDS,
        factor=settings.REMINDER_RETRY_FACTOR,
        cap=settings.REMINDER_RETRY_MAX_SECONDS,
    )


OUTBOX = outbox.Outbox(
    model=ReminderMessage,
    pending=ReminderStatus.PENDING,
    sending=ReminderStatus.SENDING,
    lease_seconds=lambda: settings.REMINDER_LEASE_SECONDS,
    touched="updated_at",
)


def clients_with_webhooks(client_ids: set[int]) -> set[int]:
    """Among `client_ids`, those with an active webhook: one query per batch instead of one per reminder."""
    if not client_ids:
        return set()
    return set(
        WebhookEndpoint.objects.filter(client_id__in=client_ids, disabled_at__isnull=True).values_list(
            "client_id", flat=True
        )
    )


def reminder_event_payload(reminder: Reminder, token: Token) -> dict:
    return {"token": token_payload(token), "threshold": reminder.threshold, "route": reminder.route}


@functools.lru_cache(maxsize=4096)
def _long_date(day: dt.date) -> str:
    """A date as the emails write it (French: 3 mars 2027)."""
    with translation.override("fr"):
        return date_format(day, "j F Y")


@functools.lru_cache(maxsize=64)
def _labels(fields: tuple[str, ...]) -> tuple[str, ...]:
    with translation.override("fr"):
        return tuple(str(prefill.FIELD_LABELS[f]) for f in fields)


@dataclass(frozen=True)
class _Context:
    """What the batch's emails say beyond their reminder, read once for the batch at sending time."""

    pending: dict  # token id -> the open AccessRequest that would replace it
    prefill: dict  # token id -> tokens.prefill.PrefillSource (api_gouv tokens without a pending request)


def _batch_context(tokens: list[Token]) -> _Context:
    requests = pending.replacing_requests(t.pk for t in tokens)
    renewable = [t for t in tokens if t.pk not in requests and t.origin == Origin.API_GOUV]
    return _Context(pending=requests, prefill=prefill.renewal_prefill_sources(tokens=renewable))


def _email_data(
    message: ReminderMessage, token: Token, users: dict, today: dt.date, context: _Context
) -> emails.ReminderEmail:
    """What one recipient's email shows: their own address and sign-in link only, and how many others got it."""
    reminder = message.reminder
    url = emails.action_url(reminder.route, token.public_id)
    link = ""
    user = None if message.to_admins else users.get(message.email)
    if user is not None:
        link = url + get_query_string(user, scope=magic_link_scope(token.public_id))
    extra: dict = {}
    request = context.pending.get(token.pk)
    if request is not None:
        extra.update(
            pending_state=request.state,
            pending_kind=request.kind,
            pending_date=_long_date(pending.request_date(request)),
            pending_url=settings.SITE_URL + reverse("request_detail", args=[request.public_id]),
        )
    source = context.prefill.get(token.pk)
    if source is not None:
        extra.update(
            prefill_date=_long_date(source.date) if source.date else "",
            prefill_fields=_labels(tuple(source.fields)),
            prefill_missing=_labels(tuple(source.missing)),
        )
    return emails.ReminderEmail(
        threshold=reminder.threshold,
        route=reminder.route,
        token_public_id=str(token.public_id),
        client_name=token.client.name,
        token_label=token.label,
        token_prefix=token.secret_prefix,
        privileges=[(p.code, p.label) for p in token.privileges.all()],
        expires_on=validity.local_date(token.expires_at),
        days_left=validity.days_left(token.expires_at, today),
        recipient=message.email,
        other_recipients=0 if message.to_admins else max(len(reminder.recipients) - 1, 0),
        action_url=url,
        personal_link=link,
        admins_fallback=message.to_admins,
        **extra,
    )


def _record_failure(message: ReminderMessage, error: str, worker: str, result: DeliveryResult) -> None:
    """A failed attempt (counted by the claim): retry later with backoff, or `failed` for good."""
    now = timezone.now()
    result.failed += 1
    fields: dict = {}
    if message.attempts >= settings.REMINDER_MAX_ATTEMPTS:
        fields.update(status=ReminderStatus.FAILED)
        result.gave_up += 1
        logger.error(
            "reminder message %s failed for good after %d attempts: %s", message.pk, message.attempts, error
        )
    else:
        fields.update(status=ReminderStatus.PENDING, next_attempt_at=now + retry_delay(message.attempts))
        logger.warning("reminder message %s attempt %d failed: %s", message.pk, message.attempts, error)
    OUTBOX.settle(message.pk, worker=worker, last_error=error[:2000], updated_at=now, **fields)


def _cancel(message: ReminderMessage, reason: str, worker: str, result: DeliveryResult) -> None:
    result.skipped += 1
    OUTBOX.settle(
        message.pk,
        worker=worker,
        status=ReminderStatus.CANCELLED,
        last_error=reason,
        attempts=F("attempts") - 1,
    )


def _send(conn, message: emails.ReminderMessage) -> None:
    """Send one message on the run's open connection; raises when it was not accepted. Django's SMTP backend gets
    the message's own bytes (smtp_fastpath, measured there); any other backend gets send_messages."""
    if smtp_fastpath.send(conn, message):
        return
    if not conn.send_messages([message]):
        raise RuntimeError("the mail backend accepted no message")


class _Mailer:
    """The delivery run's one mail connection, opened on first use and reopened after a failed send."""

    def __init__(self, conn):
        self.conn = conn
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


def lease_margin() -> dt.timedelta:
    """No send starts this close to the end of its message's lease: a send never outlives its claim."""
    return dt.timedelta(seconds=settings.REMINDER_LEASE_SECONDS / 4)


def reminder_messages_claim(
    *, worker: str, batch_size: int, now: dt.datetime | None = None
) -> list[ReminderMessage]:
    """Claim up to `batch_size` messages for `worker` (tokenmgr.outbox: one short committed transaction, SKIP
    LOCKED, crashed workers' messages first, one more attempt counted), each `sending` until
    now + REMINDER_LEASE_SECONDS; returns them with their reminder, token and client.
    """
    ids = OUTBOX.claim(worker=worker, limit=batch_size, now=now)
    if not ids:
        return []
    messages = list(
        OUTBOX.claimed(ids, worker=worker)
        .select_related("reminder__token__client")
        .order_by("next_attempt_at", "id")
    )
    # One token object per token, so that its contacts and privileges are fetched once for all its messages.
    tokens: dict[int, Token] = {}
    for message in messages:
        token = tokens.setdefault(message.reminder.token_id, message.reminder.token)
        message.reminder.token = token
    return messages


def _deliver_claimed(
    messages: list[ReminderMessage], now: dt.datetime, today: dt.date, mailer: _Mailer, worker: str
) -> DeliveryResult:
    """Send the claimed messages one by one, each outcome committed right after its send (a crash re-sends at
    most the one message in flight), then settle their reminders."""
    result = DeliveryResult()
    tokens = list({m.reminder.token_id: m.reminder.token for m in messages}.values())
    prefetch_related_objects(tokens, "contacts", "privileges")
    declined = reminders_declined_token_ids(t.pk for t in tokens)
    context = _batch_context(tokens)
    contacts_now = {t.pk: set(recipients_for(t)) for t in tokens}
    plans = []
    for message in messages:
        reminder, token = message.reminder, message.reminder.token
        if message.attempts > settings.REMINDER_MAX_ATTEMPTS:  # claimed again and again by workers that died
            result.failed += 1
            result.gave_up += 1
            logger.error(
                "reminder message %s: its workers died %d times, given up", message.pk, message.attempts
            )
            OUTBOX.settle(
                message.pk,
                worker=worker,
                status=ReminderStatus.FAILED,
                last_error="envoi interrompu trop de fois",
            )
            continue
        reason = ineligibility(reminder, token, now, declined=token.pk in declined)
        if not reason and not message.to_admins and message.email not in contacts_now[token.pk]:
            reason = "destinataire retiré des contacts du jeton"
        if reason:
            _cancel(message, reason, worker, result)
            continue
        plans.append(message)

    users = link_users_get_or_create(emails={m.email for m in plans if not m.to_admins})
    margin = lease_margin()
    for i, message in enumerate(plans):
        if timezone.now() + margin >= message.lease_until:  # too slow: let another worker take the rest
            OUTBOX.release([m.pk for m in plans[i:]], worker=worker)
            logger.warning("reminder delivery: lease running out, %d messages released", len(plans) - i)
            break
        open_error = mailer.ensure_open()
        if open_error:  # SMTP down: the rest of the claim goes back to pending, with backoff
            for rest in plans[i:]:
                _record_failure(rest, open_error, worker, result)
            break
        try:
            data = _email_data(message, message.reminder.token, users, today, context)
            email = emails.build_message(data, mailer.conn, msgid=emails.message_id(f"reminder.{message.pk}"))
        except Exception as exc:
            _record_failure(message, f"{type(exc).__name__}: {exc}", worker, result)
            continue
        try:
            _send(mailer.conn, email)
        except Exception as exc:
            if not isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPDataError):
                mailer.close()  # the connection may be broken: the next message reopens it
            _record_failure(message, f"{type(exc).__name__}: {exc}", worker, result)
            continue
        sent_at = timezone.now()
        result.sent += 1
        OUTBOX.settle(
            message.pk,
            worker=worker,
            status=ReminderStatus.SENT,
            sent_at=sent_at,
            message_id=email.extra_headers["Message-ID"],
            last_error="",
            updated_at=sent_at,
        )
    reminders_settle(reminder_ids={m.reminder_id for m in messages})
    return result


def reminders_settle(*, reminder_ids: Iterable[int]) -> int:
    """Bring the status of pending ledger rows in line with their messages; returns how many changed.

    A reminder stays pending while one of its messages is pending or sending; then it is `failed` if one failed
    for good, `sent` if one was sent (the others cancelled), else `cancelled`. The rows are locked first, so that
    the messages are read after every concurrent settlement of the same rows has committed: whichever worker settles
    last sees all the outcomes. A reminder that becomes `sent` emits its `token.reminder_sent` webhook event, once.
    """
    ids = sorted(set(reminder_ids))
    if not ids:
        return 0
    now = timezone.now()
    with transaction.atomic():
        locked = list(
            Reminder.objects.filter(pk__in=ids, status=ReminderStatus.PENDING)
            .select_for_update()
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not locked:
            return 0
        counts = (
            ReminderMessage.objects.filter(reminder_id__in=locked)
            .values("reminder_id")
            .annotate(
                open=Count("pk", filter=Q(status__in=OPEN_STATUSES)),
                failed=Count("pk", filter=Q(status=ReminderStatus.FAILED)),
                sent=Count("pk", filter=Q(status=ReminderStatus.SENT)),
            )
        )
        outcome: dict[str, list[int]] = {}
        for row in counts:
            if row["open"]:
                continue
            if row["failed"]:
                status = ReminderStatus.FAILED
            elif row["sent"]:
                status = ReminderStatus.SENT
            else:
                status = ReminderStatus.CANCELLED
            outcome.setdefault(status, []).append(row["reminder_id"])
        last_error = Coalesce(
            Subquery(
                ReminderMessage.objects.filter(reminder_id=OuterRef("pk"))
                .exclude(last_error="")
                .order_by("-updated_at", "-id")
                .values("last_error")[:1]
            ),
            Value(""),
        )
        for status, group in outcome.items():
            fields: dict = {"status": status, "updated_at": now}
            if status == ReminderStatus.SENT:
                fields["sent_at"] = Subquery(
                    ReminderMessage.objects.filter(reminder_id=OuterRef("pk"))
                    .values("reminder_id")
                    .annotate(last=Max("sent_at"))
                    .values("last")
                )
                fields["last_error"] = ""
            else:
                fields["last_error"] = last_error
            Reminder.objects.filter(pk__in=group).update(**fields)
        sent = outcome.get(ReminderStatus.SENT, [])
        if sent:
            _emit_sent_events(sent)
    return sum(len(group) for group in outcome.values())


def _emit_sent_events(reminder_ids: list[int]) -> None:
    """token.reminder_sent for the reminders of clients with an active webhook (dedup key: once per reminder)."""
    reminders = list(Reminder.objects.filter(pk__in=reminder_ids).select_related("token__client"))
    hooked = clients_with_webhooks({r.token.client_id for r in reminders})
    for reminder in reminders:
        if reminder.token.client_id in hooked:
            webhook_emit(
                client=reminder.token.client,
                event_type="token.reminder_sent",
                payload=reminder_event_payload(reminder, reminder.token),
                dedup_key=f"token.reminder_sent:{reminder.pk}",
            )


def reminders_settle_stale() -> int:
    """Settle pending ledger rows none of whose messages is still open (their worker died before settling them)."""
    stale = (
        Reminder.objects.filter(status=ReminderStatus.PENDING)
        .filter(Exists(ReminderMessage.objects.filter(reminder_id=OuterRef("pk"))))
        .exclude(Exists(ReminderMessage.objects.filter(reminder_id=OuterRef("pk"), status__in=OPEN_STATUSES)))
        .values_list("pk", flat=True)
    )
    return reminders_settle(reminder_ids=list(stale))


def reminders_deliver(
    *, today: dt.date | None = None, batch_size: int | None = None, max_batches: int | None = None
) -> DeliveryResult:
    """Send the due reminder messages (and those crashed workers left behind), batch by batch, until none is left.

    Each batch is claimed in a short transaction (reminder_messages_claim: SKIP LOCKED, lease); each message's
    outcome (sent / retry later / failed / cancelled) is committed right after its send, so a SIGKILL re-sends at
    most the one message in flight, once the lease of its claim has expired. Ledger rows a dead worker left
    unsettled are settled first.
    """
    batch_size = batch_size or settings.REMINDER_DELIVERY_BATCH
    worker = outbox.worker_id()
    total = DeliveryResult()
    done = 0
    reminders_settle_stale()
    timeout = settings.EMAIL_TIMEOUT or lease_margin().total_seconds()
    mailer = _Mailer(get_connection(timeout=timeout))
    try:
        while max_batches is None or done < max_batches:
            now = timezone.now()
            claimed = reminder_messages_claim(worker=worker, batch_size=batch_size, now=now)
            if not claimed:
                break
            total += _deliver_claimed(claimed, now, today or validity.local_date(now), mailer, worker)
            done += 1
    finally:
        mailer.close()
    if total.sent or total.failed or total.skipped:
        logger.info(
            "reminder messages delivered: %d sent, %d skipped, %d failed",
            total.sent,
            total.skipped,
            total.failed,
        )
    return total

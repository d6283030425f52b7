"""Every write on reminders: the daily sweep (decide + queue), delivery (claim + send), re-queueing.

The sweep decides in the database which tokens are due (CONTRACT §2 reminder rule) and inserts one pending row per
(token, threshold, expires_at) — the unique constraint makes concurrent or repeated sweeps harmless. Delivery claims
due rows with SELECT … FOR UPDATE SKIP LOCKED under a lease (status `sending`), so several workers never send the
same row, and records each message's outcome right after its send, so a killed worker re-sends at most one.
"""

import contextlib
import datetime as dt
import logging
import os
import smtplib
import socket
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import (
    Case,
    Exists,
    F,
    OuterRef,
    PositiveSmallIntegerField,
    Q,
    Value,
    When,
    prefetch_related_objects,
)
from django.utils import timezone
from sesame.utils import get_query_string

from portal.models import WebhookEndpoint
from portal.selectors import reminders_declined_token_ids, tokens_without_declined
from portal.webhooks import token_payload, webhook_emit
from tokens import validity
from tokens.models import Contact, Token
from tokens.selectors import emails_dedupe

from . import emails
from .models import Reminder, ReminderStatus, SweepRun

logger = logging.getLogger(__name__)

# Rows that count as "already sent" for the rule: a pending or sending row is about to be sent.
BLOCKING_STATUSES = (ReminderStatus.PENDING, ReminderStatus.SENDING, ReminderStatus.SENT)
CONTACT_ROLE_ORDER = {role: i for i, role in enumerate(Contact.Role.values)}


# ------------------------------------------------------------------------------------------------------------------
# The rule
# ------------------------------------------------------------------------------------------------------------------
def thresholds() -> list[int]:
    """REMINDER_DAYS, ascending."""
    return sorted(settings.REMINDER_DAYS)


def threshold_for(days_left: int) -> int | None:
    """The smallest threshold ≥ days_left, for 0 < days_left ≤ max(thresholds); else None."""
    if days_left <= 0:
        return None
    return next((t for t in thresholds() if t >= days_left), None)


def magic_link_scope(public_id) -> str:
    """Sesame scope of a login link: valid on that token's pages only."""
    return f"token:{public_id}"


# ------------------------------------------------------------------------------------------------------------------
# Sweep
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepResult:
    today: dt.date
    queued: int
    batches: int


def due_tokens(*, today: dt.date):
    """Active tokens due on `today` under the reminder rule, annotated with `due_threshold`, in (expires_at, id).

    Due threshold by expiry day (indexed range on expires_at, TIME_ZONE day bounds); a token is left out when a
    pending or sent reminder for that threshold or a smaller one exists for its current expiry.
    """
    steps = thresholds()
    start = validity.start_of_day(today + dt.timedelta(days=1))
    end = validity.start_of_day(today + dt.timedelta(days=steps[-1] + 1))
    due_threshold = Case(
        *[
            When(expires_at__lt=validity.start_of_day(today + dt.timedelta(days=t + 1)), then=Value(t))
            for t in steps
        ],
        output_field=PositiveSmallIntegerField(),
    )
    blocking = Reminder.objects.filter(
        token_id=OuterRef("pk"),
        expires_at=OuterRef("expires_at"),
        threshold__lte=OuterRef("due_threshold"),
        status__in=BLOCKING_STATUSES,
    )
    return (
        tokens_without_declined(Token.objects.filter(revoked_at__isnull=True, renewed_by__isnull=True))
        .expiring_between(start, end)
        .annotate(due_threshold=due_threshold)
        .filter(~Exists(blocking))
        .order_by("expires_at", "id")
    )


def _insert_pending(rows: list[tuple[int, dt.datetime, int, str]], now: dt.datetime) -> int:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the constraint arbitrates concurrent sweeps; returns rows inserted.

    The rows travel as four arrays (unnest), whatever their number: no parameter limit, little to parse.
    """
    if not rows:
        return 0
    table = connection.ops.quote_name(Reminder._meta.db_table)
    columns = (
        "token_id, threshold, expires_at, route, status, attempts, last_error, "
        "next_attempt_at, message_id, recipients, created_at, updated_at"
    )
    if connection.vendor != "postgresql":  # SQLite (make run): one VALUES row per reminder
        values = ", ".join(["(%s, %s, %s, %s, 'pending', 0, '', %s, '', '[]', %s, %s)"] * len(rows))
        params: list = []
        for token_id, expires_at, threshold, route in rows:
            params += [token_id, threshold, expires_at, route, now, now, now]
        sql = f"INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT DO NOTHING RETURNING id"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return len(cursor.fetchall())
    sql = (
        f"INSERT INTO {table} ({columns}) "  # noqa: S608
        "SELECT u.token_id, u.threshold, u.expires_at, u.route, 'pending', 0, '', %s, '', '[]', %s, %s "
        "FROM unnest(%s::bigint[], %s::smallint[], %s::timestamptz[], %s::varchar[]) "
        "AS u(token_id, threshold, expires_at, route) ON CONFLICT DO NOTHING RETURNING id"
    )
    token_ids, expiries, steps, routes = zip(*rows, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, now, now, list(token_ids), list(steps), list(expiries), list(routes)])
        return len(cursor.fetchall())


def reminders_sweep(*, today: dt.date | None = None, batch_size: int | None = None) -> SweepResult:
    """Queue the reminders due on `today` (default: today in TIME_ZONE). Two queries per batch of tokens."""
    started_at = timezone.now()
    today = today or validity.today()
    batch_size = batch_size or settings.REMINDER_SWEEP_BATCH
    base = due_tokens(today=today).values_list("id", "expires_at", "due_threshold", "origin")
    queued = batches = 0
    last: tuple[dt.datetime, int] | None = None
    while True:
        page = base
        if last is not None:
            # Keyset: (expires_at, id) > last, with a plain range bound first so the index scan starts there.
            page = page.filter(Q(expires_at__gt=last[0]) | Q(id__gt=last[1]), expires_at__gte=last[0])
        with transaction.atomic():
            rows = list(page[:batch_size])
            if not rows:
                break
            batches += 1
            queued += _insert_pending(rows, timezone.now())
        if len(rows) < batch_size:
            break
        last = (rows[-1][1], rows[-1][0])
    SweepRun.objects.create(
        day=today, started_at=started_at, finished_at=timezone.now(), queued=queued, batches=batches
    )
    logger.info("reminders sweep %s: %d queued in %d batches", today, queued, batches)
    return SweepResult(today=today, queued=queued, batches=batches)


# ------------------------------------------------------------------------------------------------------------------
# Delivery
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class DeliveryResult:
    sent: int = 0
    skipped: int = 0  # cancelled: the token became ineligible before delivery
    failed: int = 0  # attempts that failed in this run (retried later, or `failed` for good)
    gave_up: int = 0  # rows that reached REMINDER_MAX_ATTEMPTS in this run

    def __iadd__(self, other: "DeliveryResult") -> "DeliveryResult":
        self.sent += other.sent
        self.skipped += other.skipped
        self.failed += other.failed
        self.gave_up += other.gave_up
        return self


def retry_delay(attempts: int) -> dt.timedelta:
    """Exponential backoff after `attempts` failures: base, base·factor, base·factor², … capped."""
    seconds = settings.REMINDER_RETRY_BASE_SECONDS * settings.REMINDER_RETRY_FACTOR ** max(attempts - 1, 0)
    return dt.timedelta(seconds=min(seconds, settings.REMINDER_RETRY_MAX_SECONDS))


def ineligibility(reminder: Reminder, token: Token, now: dt.datetime, declined: bool = False) -> str:
    """Why this reminder must not be sent any more ('' if it still must)."""
    if declined:
        return "renouvellement décliné par le titulaire"
    if token.revoked_at is not None:
        return "jeton révoqué"
    if token.expires_at <= now:
        return "jeton expiré"
    if token.renewed_by_id is not None:
        return "jeton remplacé par un renouvellement"
    if token.expires_at != reminder.expires_at:
        return "date d'expiration modifiée"
    return ""


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


def _deliverable(email: str) -> bool:
    try:
        validate_email(email)
    except Exception:
        return False
    return True


def recipients_for(token: Token) -> list[str]:
    """Every contact's address, deduplicated case-insensitively (first spelling kept), requester first."""
    contacts = sorted(
        token.contacts.all(), key=lambda c: (CONTACT_ROLE_ORDER.get(c.role, 99), c.email.lower())
    )
    return emails_dedupe(emails=(c.email for c in contacts if _deliverable(c.email.strip())))


def admin_recipients() -> list[str]:
    return list(dict.fromkeys(email for _, email in settings.ADMINS if email))


def login_users_for(emails: set[str]) -> dict[str, object]:
    """Users (username = lower-cased email) that magic links sign in, created when missing; two or three queries.

    Staff accounts never get a magic link: a link in an email must not open the admin.
    """
    user_model = get_user_model()
    if not emails:
        return {}

    def fetch():
        return {u.email: u for u in user_model.objects.filter(email__in=emails)}

    users = fetch()
    missing = emails - users.keys()
    if missing:
        new = []
        for email in sorted(missing):
            user = user_model(email=email)
            user.set_unusable_password()
            new.append(user)
        user_model.objects.bulk_create(new, ignore_conflicts=True)
        users = fetch()
    return {e: u for e, u in users.items() if u.is_active and not u.is_staff and not u.is_superuser}


def _email_data(reminder: Reminder, token: Token, recipients: list[str], fallback: bool, users, today):
    url = emails.action_url(reminder.route, token.public_id)
    links = []
    if not fallback:
        scope = magic_link_scope(token.public_id)
        for email in recipients:
            user = users.get(email.lower())
            if user is not None:
                links.append(emails.PersonalLink(email, url + get_query_string(user, scope=scope)))
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
        recipients=recipients,
        action_url=url,
        personal_links=links,
        admins_fallback=fallback,
    )


def _settle(reminder: Reminder, worker: str, **fields) -> bool:
    """Record one row's outcome in its own statement, only while this worker's claim holds (a row whose lease
    expired and that another worker took over is theirs to settle)."""
    fields.setdefault("updated_at", timezone.now())
    updated = Reminder.objects.filter(
        pk=reminder.pk, status=ReminderStatus.SENDING, claimed_by=worker
    ).update(lease_until=None, **fields)
    return updated == 1


def _record_failure(reminder: Reminder, error: str, worker: str, result: DeliveryResult, **fields) -> None:
    """A failed attempt (counted by the claim): retry later with backoff, or `failed` for good."""
    now = timezone.now()
    result.failed += 1
    if reminder.attempts >= settings.REMINDER_MAX_ATTEMPTS:
        fields.update(status=ReminderStatus.FAILED)
        result.gave_up += 1
        logger.error(
            "reminder %s failed for good after %d attempts: %s", reminder.pk, reminder.attempts, error
        )
    else:
        fields.update(status=ReminderStatus.PENDING, next_attempt_at=now + retry_delay(reminder.attempts))
        logger.warning("reminder %s attempt %d failed: %s", reminder.pk, reminder.attempts, error)
    _settle(reminder, worker, last_error=error[:2000], updated_at=now, **fields)


def _send(conn, message: emails.ReminderMessage) -> None:
    """Send one message on the open connection; raises when it was not accepted.

    On Django's SMTP backend the message goes straight to its smtplib connection as `wire_bytes()` (what
    send_messages would do, minus the email package's slow serialisation); any other backend gets send_messages.
    """
    if isinstance(conn, SMTPBackend) and conn.connection is not None:
        encoding = message.encoding or settings.DEFAULT_CHARSET
        conn.connection.sendmail(
            emails.header_address(message.from_email, encoding),
            [emails.header_address(addr, encoding) for addr in message.recipients()],
            message.wire_bytes(),
        )
    elif not conn.send_messages([message]):
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
    """No send starts this close to the end of its row's lease: a send never outlives its claim."""
    return dt.timedelta(seconds=settings.REMINDER_LEASE_SECONDS / 4)


def reminders_claim(*, worker: str, batch_size: int, now: dt.datetime | None = None) -> list[Reminder]:
    """Claim up to `batch_size` rows for `worker` in one short committed transaction.

    Claimable: crashed workers' rows (`sending`, lease expired) first, then pending rows that are due; both with
    FOR UPDATE SKIP LOCKED, so concurrent claims never take the same row. Each becomes `sending` until
    now + REMINDER_LEASE_SECONDS, with one more attempt counted (a row that keeps killing its workers gives up).
    """
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Reminder.objects.lease_expired(now)
            .select_for_update(skip_locked=True)
            .order_by("lease_until", "id")
            .values_list("id", flat=True)[:batch_size]
        )
        if len(ids) < batch_size:
            ids += list(
                Reminder.objects.pending_due(now)
                .select_for_update(skip_locked=True)
                .order_by("next_attempt_at", "id")
                .values_list("id", flat=True)[: batch_size - len(ids)]
            )
        if not ids:
            return []
        Reminder.objects.filter(pk__in=ids).update(
            status=ReminderStatus.SENDING,
            lease_until=now + dt.timedelta(seconds=settings.REMINDER_LEASE_SECONDS),
            claimed_by=worker,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    return list(
        Reminder.objects.filter(pk__in=ids, status=ReminderStatus.SENDING, claimed_by=worker)
        .select_related("token__client")
        .order_by("next_attempt_at", "id")
    )


def _release(reminders: list[Reminder], worker: str) -> None:
    """Give claimed rows that were not attempted back to the outbox, their attempt uncounted."""
    Reminder.objects.filter(
        pk__in=[r.pk for r in reminders], status=ReminderStatus.SENDING, claimed_by=worker
    ).update(
        status=ReminderStatus.PENDING, lease_until=None, attempts=F("attempts") - 1, updated_at=timezone.now()
    )


def _deliver_claimed(
    reminders: list[Reminder], now: dt.datetime, today: dt.date, mailer: _Mailer, worker: str
) -> DeliveryResult:
    """Send the claimed rows one by one, each outcome committed right after its send: a crash re-sends at most
    the one message in flight."""
    result = DeliveryResult()
    tokens = [r.token for r in reminders]
    prefetch_related_objects(tokens, "contacts", "privileges")
    declined = reminders_declined_token_ids(t.pk for t in tokens)
    plans = []
    for reminder in reminders:
        token = reminder.token
        if reminder.attempts > settings.REMINDER_MAX_ATTEMPTS:  # claimed again and again by workers that died
            result.failed += 1
            result.gave_up += 1
            logger.error("reminder %s: its workers died %d times, given up", reminder.pk, reminder.attempts)
            _settle(
                reminder, worker, status=ReminderStatus.FAILED, last_error="envoi interrompu trop de fois"
            )
            continue
        reason = ineligibility(reminder, token, now, declined=token.pk in declined)
        if reason:
            result.skipped += 1
            _settle(
                reminder,
                worker,
                status=ReminderStatus.CANCELLED,
                last_error=reason,
                attempts=F("attempts") - 1,
            )
            continue
        recipients = recipients_for(token)
        fallback = not recipients
        if fallback:
            recipients = admin_recipients()
        if not recipients:
            result.failed += 1
            result.gave_up += 1
            logger.error("reminder %s: no contact and no ADMINS", reminder.pk)
            _settle(
                reminder,
                worker,
                status=ReminderStatus.FAILED,
                last_error="aucun contact joignable et ADMINS est vide",
            )
            continue
        plans.append((reminder, token, recipients, fallback))

    hooked_clients = clients_with_webhooks({token.client_id for _, token, _, _ in plans})
    users = login_users_for({e.lower() for _, _, rcpt, fb in plans if not fb for e in rcpt})
    margin = lease_margin()
    for i, (reminder, token, recipients, fallback) in enumerate(plans):
        if timezone.now() + margin >= reminder.lease_until:  # too slow: let another worker take the rest
            _release([r for r, _, _, _ in plans[i:]], worker)
            logger.warning("reminder delivery: lease running out, %d rows released", len(plans) - i)
            break
        open_error = mailer.ensure_open()
        if open_error:  # SMTP down: the rest of the claim goes back to pending, with backoff
            for rest, _, rest_recipients, _ in plans[i:]:
                _record_failure(rest, open_error, worker, result, recipients=rest_recipients)
            break
        try:
            message = emails.build_message(
                _email_data(reminder, token, recipients, fallback, users, today), mailer.conn
            )
        except Exception as exc:
            _record_failure(reminder, f"{type(exc).__name__}: {exc}", worker, result, recipients=recipients)
            continue
        try:
            _send(mailer.conn, message)
        except Exception as exc:
            if not isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPDataError):
                mailer.close()  # the connection may be broken: the next message reopens it
            _record_failure(reminder, f"{type(exc).__name__}: {exc}", worker, result, recipients=recipients)
            continue
        sent_at = timezone.now()
        result.sent += 1
        with transaction.atomic():
            settled = _settle(
                reminder,
                worker,
                status=ReminderStatus.SENT,
                sent_at=sent_at,
                message_id=message.extra_headers["Message-ID"],
                recipients=recipients,
                last_error="",
                updated_at=sent_at,
            )
            if settled and token.client_id in hooked_clients:
                webhook_emit(
                    client=token.client,
                    event_type="token.reminder_sent",
                    payload=reminder_event_payload(reminder, token),
                    dedup_key=f"token.reminder_sent:{reminder.pk}",
                )
    return result


def delivery_worker_id() -> str:
    """Who claims: host, process and a random part (each delivery run settles only its own claims)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def reminders_deliver(
    *, today: dt.date | None = None, batch_size: int | None = None, max_batches: int | None = None
) -> DeliveryResult:
    """Send the due reminders (and those crashed workers left behind), batch by batch, until none is left.

    Each batch is claimed in a short transaction (reminders_claim: SKIP LOCKED, lease); each message's outcome
    (sent / retry later / failed / cancelled) is committed right after its send, so a SIGKILL re-sends at most
    the one message in flight, once the lease of its claim has expired.
    """
    batch_size = batch_size or settings.REMINDER_DELIVERY_BATCH
    worker = delivery_worker_id()
    total = DeliveryResult()
    done = 0
    timeout = settings.EMAIL_TIMEOUT or lease_margin().total_seconds()
    mailer = _Mailer(get_connection(timeout=timeout))
    try:
        while max_batches is None or done < max_batches:
            now = timezone.now()
            claimed = reminders_claim(worker=worker, batch_size=batch_size, now=now)
            if not claimed:
                break
            total += _deliver_claimed(claimed, now, today or validity.local_date(now), mailer, worker)
            done += 1
    finally:
        mailer.close()
    if total.sent or total.failed or total.skipped:
        logger.info(
            "reminders delivered: %d sent, %d skipped, %d failed", total.sent, total.skipped, total.failed
        )
    return total


# ------------------------------------------------------------------------------------------------------------------
# Admin actions
# ------------------------------------------------------------------------------------------------------------------
@transaction.atomic
def reminders_requeue(*, reminder_ids: list[int], by=None) -> int:
    """Put failed reminders back in the outbox, due now, with a fresh attempt count."""
    now = timezone.now()
    count = Reminder.objects.filter(pk__in=reminder_ids, status=ReminderStatus.FAILED).update(
        status=ReminderStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        updated_at=now,
        last_error=f"remis en file par {by}" if by else "remis en file",
    )
    if count:
        from .tasks import deliver_reminders

        transaction.on_commit(deliver_reminders.delay)
    return count

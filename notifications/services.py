"""Every write on reminders: the daily sweep (decide + queue), delivery (claim + send), re-queueing.

The sweep decides in the database which tokens are due (CONTRACT §2 reminder rule) and inserts one pending row per
(token, threshold, expires_at) — the unique constraint makes concurrent or repeated sweeps harmless. Delivery claims
pending rows with SELECT … FOR UPDATE SKIP LOCKED, so several workers never send the same row.
"""

import contextlib
import datetime as dt
import json
import logging
from concurrent.futures import ThreadPoolExecutor
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
    OuterRef,
    PositiveSmallIntegerField,
    Q,
    Value,
    When,
    prefetch_related_objects,
)
from django.db.models.functions import Lower
from django.utils import timezone
from sesame.utils import get_query_string

from portal.models import WebhookEndpoint
from portal.selectors import reminders_declined_token_ids, tokens_without_declined
from portal.webhooks import token_payload, webhook_emit
from tokens import validity
from tokens.models import Contact, Token

from . import emails
from .models import Reminder, ReminderStatus, SweepRun

logger = logging.getLogger(__name__)

# Rows that count as "already sent" for the rule: a pending row is about to be sent.
BLOCKING_STATUSES = (ReminderStatus.PENDING, ReminderStatus.SENT)
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
    seen: dict[str, str] = {}
    contacts = sorted(
        token.contacts.all(), key=lambda c: (CONTACT_ROLE_ORDER.get(c.role, 99), c.email.lower())
    )
    for contact in contacts:
        email = contact.email.strip()
        if email and _deliverable(email) and email.lower() not in seen:
            seen[email.lower()] = email
    return list(seen.values())


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
        return {
            u.login_email: u
            for u in user_model.objects.annotate(login_email=Lower("username")).filter(login_email__in=emails)
        }

    users = fetch()
    missing = emails - users.keys()
    if missing:
        new = []
        for email in sorted(missing):
            user = user_model(username=email, email=email)
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


def _record_failure(reminder: Reminder, error: str, now: dt.datetime, result: DeliveryResult) -> None:
    reminder.attempts += 1
    reminder.last_error = error[:2000]
    result.failed += 1
    if reminder.attempts >= settings.REMINDER_MAX_ATTEMPTS:
        reminder.status = ReminderStatus.FAILED
        result.gave_up += 1
        logger.error(
            "reminder %s failed for good after %d attempts: %s", reminder.pk, reminder.attempts, error
        )
    else:
        reminder.next_attempt_at = now + retry_delay(reminder.attempts)
        logger.warning("reminder %s attempt %d failed: %s", reminder.pk, reminder.attempts, error)


OUTCOME_FIELDS = (
    "status",
    "attempts",
    "last_error",
    "next_attempt_at",
    "sent_at",
    "message_id",
    "recipients",
    "updated_at",
)


def _save_outcomes(reminders: list[Reminder]) -> None:
    """Write the batch's outcomes in one statement (UPDATE … FROM VALUES on PostgreSQL; bulk_update elsewhere)."""
    if connection.vendor != "postgresql":
        Reminder.objects.bulk_update(reminders, OUTCOME_FIELDS)
        return
    table = connection.ops.quote_name(Reminder._meta.db_table)
    row = "(%s::bigint, %s::varchar, %s::smallint, %s::text, %s::timestamptz, %s::timestamptz, %s::varchar, %s::jsonb, %s::timestamptz)"
    params: list = []
    for r in reminders:
        params += [
            r.pk,
            r.status,
            r.attempts,
            r.last_error,
            r.next_attempt_at,
            r.sent_at,
            r.message_id,
            json.dumps(r.recipients),
            r.updated_at,
        ]
    sets = ", ".join(f"{f} = v.{f}" for f in OUTCOME_FIELDS)
    values = ", ".join([row] * len(reminders))
    columns = ", ".join(OUTCOME_FIELDS)
    sql = f"UPDATE {table} AS r SET {sets} FROM (VALUES {values}) AS v(id, {columns}) WHERE r.id = v.id"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _send(conn, message: emails.ReminderMessage) -> None:
    """Send one message on the batch's open connection; raises when it was not accepted.

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


def _open_connections(conn, messages: int) -> tuple[list, list, str]:
    """The batch's connections: `conn`, plus up to REMINDER_SMTP_CONNECTIONS - 1 more on the SMTP backend (the
    relay's round trips then overlap); those this call opened (to close after the batch); or the error when `conn`
    cannot be opened."""
    if not messages:
        return [], [], ""
    try:
        opened = conn.open() is not False  # False: it was already open (not ours to close)
    except Exception as exc:
        return [], [], f"{type(exc).__name__}: {exc}"
    conns = [conn]
    if isinstance(conn, SMTPBackend):
        for _ in range(min(settings.REMINDER_SMTP_CONNECTIONS, messages) - 1):
            extra = get_connection()
            try:
                extra.open()
            except Exception as exc:  # the batch goes on with the connections it has
                logger.warning("extra SMTP connection refused: %s: %s", type(exc).__name__, exc)
                break
            conns.append(extra)
    return conns, conns if opened else conns[1:], ""


def _send_all(conns: list, messages: list) -> list[tuple[Exception | None, dt.datetime | None]]:
    """Send `messages` over `conns` (one thread per connection, messages dealt round-robin); per message, the
    error or the time it was accepted."""
    outcomes: list = [None] * len(messages)

    def run(k: int) -> None:
        for i in range(k, len(messages), len(conns)):
            try:
                _send(conns[k], messages[i])
            except Exception as exc:
                outcomes[i] = (exc, None)
            else:
                outcomes[i] = (None, timezone.now())

    if len(conns) <= 1 or len(messages) <= 1:
        for k in range(len(conns)):
            run(k)
    else:
        with ThreadPoolExecutor(max_workers=len(conns), thread_name_prefix="reminder-smtp") as pool:
            list(pool.map(run, range(len(conns))))
    return outcomes


def _deliver_batch(reminders: list[Reminder], now: dt.datetime, today: dt.date, conn) -> DeliveryResult:
    result = DeliveryResult()
    tokens = [r.token for r in reminders]
    prefetch_related_objects(tokens, "contacts", "privileges")
    declined = reminders_declined_token_ids(t.pk for t in tokens)
    plans = []
    for reminder in reminders:
        token = reminder.token
        reason = ineligibility(reminder, token, now, declined=token.pk in declined)
        if reason:
            reminder.status = ReminderStatus.CANCELLED
            reminder.last_error = reason
            result.skipped += 1
            continue
        recipients = recipients_for(token)
        fallback = not recipients
        if fallback:
            recipients = admin_recipients()
        if not recipients:
            reminder.attempts += 1
            reminder.status = ReminderStatus.FAILED
            reminder.last_error = "aucun contact joignable et ADMINS est vide"
            result.failed += 1
            result.gave_up += 1
            logger.error("reminder %s: no contact and no ADMINS", reminder.pk)
            continue
        plans.append((reminder, token, recipients, fallback))

    hooked_clients = clients_with_webhooks({token.client_id for _, token, _, _ in plans})
    users = login_users_for({e.lower() for _, _, rcpt, fb in plans if not fb for e in rcpt})
    conns, to_close, open_error = _open_connections(conn, len(plans))
    prepared = []
    for reminder, token, recipients, fallback in plans:
        reminder.recipients = recipients
        if open_error:  # SMTP down: every row of the batch stays pending, with backoff
            _record_failure(reminder, open_error, now, result)
            continue
        try:
            message = emails.build_message(
                _email_data(reminder, token, recipients, fallback, users, today), conn
            )
        except Exception as exc:
            _record_failure(reminder, f"{type(exc).__name__}: {exc}", now, result)
            continue
        prepared.append((reminder, token, message))
    outcomes = _send_all(conns, [message for _, _, message in prepared])
    for (reminder, token, message), (error, sent_at) in zip(prepared, outcomes, strict=True):
        if error is not None:
            _record_failure(reminder, f"{type(error).__name__}: {error}", now, result)
            continue
        reminder.status = ReminderStatus.SENT
        reminder.sent_at = sent_at
        reminder.message_id = message.extra_headers["Message-ID"]
        reminder.attempts += 1
        reminder.last_error = ""
        result.sent += 1
        if token.client_id in hooked_clients:
            webhook_emit(
                client=token.client,
                event_type="token.reminder_sent",
                payload=reminder_event_payload(reminder, token),
                dedup_key=f"token.reminder_sent:{reminder.pk}",
            )
    for opened in to_close:
        with contextlib.suppress(Exception):  # a failed QUIT does not undo what was accepted
            opened.close()
    for reminder in reminders:
        reminder.updated_at = now
    _save_outcomes(reminders)
    return result


def reminders_deliver(
    *, today: dt.date | None = None, batch_size: int | None = None, max_batches: int | None = None
) -> DeliveryResult:
    """Send the pending reminders that are due, batch by batch, until none is left to claim.

    Each batch is claimed with FOR UPDATE SKIP LOCKED and stays locked while it is sent, so concurrent workers
    never send the same row; the outcome (sent / retry later / failed / cancelled) is written before commit.
    """
    batch_size = batch_size or settings.REMINDER_DELIVERY_BATCH
    total = DeliveryResult()
    done = 0
    conn = get_connection()
    while max_batches is None or done < max_batches:
        now = timezone.now()
        with transaction.atomic():
            claimed = list(
                Reminder.objects.pending_due(now)
                .select_for_update(skip_locked=True, of=("self",))
                .select_related("token__client")
                .order_by("next_attempt_at", "id")[:batch_size]
            )
            if not claimed:
                break
            total += _deliver_batch(claimed, now, today or validity.local_date(now), conn)
        done += 1
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

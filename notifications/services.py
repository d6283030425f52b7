"""Every write on reminders: the daily sweep (decide + queue), delivery (claim + send + settle), re-queueing.

The sweep decides in the database which tokens are due (the reminder rule) and inserts, in one transaction per batch,
one ledger row per (token, threshold, expires_at) and one outbox message per (reminder, recipient): the unique
constraints make concurrent or repeated sweeps harmless. Each recipient gets a message of their own, holding only
their own sign-in link. Delivery claims due messages with SELECT … FOR UPDATE SKIP LOCKED under a lease (status
`sending`), so several workers never send the same message, and records each message's outcome right after its
send, so a killed worker re-sends at most one. After each batch the ledger rows of its messages are settled from
their messages (reminders_settle).
"""

import contextlib
import datetime as dt
import functools
import json
import logging
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    Max,
    OuterRef,
    PositiveSmallIntegerField,
    Q,
    Subquery,
    TextField,
    Value,
    When,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from sesame.utils import get_query_string

from accounts.identity import normalize_email_or_none
from tokenmgr import outbox
from tokens import validity
from tokens.models import Contact, Token

from . import emails
from .models import OPEN_STATUSES, Reminder, ReminderMessage, ReminderStatus, SweepRun, WebhookEndpoint
from .opt_outs import reminders_declined_token_ids, tokens_without_declined
from .webhooks import token_payload, webhook_emit

logger = logging.getLogger(__name__)

# Ledger rows that count as "already sent" for the rule: a pending one is about to be sent.
BLOCKING_STATUSES = (ReminderStatus.PENDING, ReminderStatus.SENDING, ReminderStatus.SENT)
CONTACT_ROLE_ORDER = {role: i for i, role in enumerate(Contact.Role.values)}
NO_RECIPIENT = "aucun contact joignable et ADMINS est vide"


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
    """Sesame scope of a reminder's sign-in link: valid on that token's pages only."""
    return f"token:{public_id}"


# ------------------------------------------------------------------------------------------------------------------
# Recipients
# ------------------------------------------------------------------------------------------------------------------
# accounts.identity.normalize_email_or_none, memoised: it validates each address (35 µs to 110 µs depending on the
# machine's load), and the same contacts come back batch after batch and day after day.
normalized = functools.lru_cache(maxsize=1 << 16)(normalize_email_or_none)


def recipients_plan(contacts: Iterable[tuple[str, str]]) -> list[str]:
    """Normalized addresses of (email, role) contacts, each once, requester first, then technical, then business;
    addresses that do not normalize (invalid) are left out. Look-alike addresses (non-ASCII case, other scripts)
    stay distinct: accounts.identity decides who is the same person."""
    ordered = sorted(
        (CONTACT_ROLE_ORDER.get(role, len(CONTACT_ROLE_ORDER)), address)
        for address, role in ((normalized(email), role) for email, role in contacts)
        if address is not None
    )
    return list(dict.fromkeys(address for _, address in ordered))


def recipients_for(token: Token) -> list[str]:
    """The token's recipients now (its contacts, prefetched or not), as recipients_plan orders them."""
    return recipients_plan((c.email, c.role) for c in token.contacts.all())


def admin_recipients() -> list[str]:
    """The ADMINS' normalized addresses: the recipients of a token without any deliverable contact."""
    return list(dict.fromkeys(a for a in (normalized(e) for _, e in settings.ADMINS) if a))


def _recipients_with_fallback(contacts: Iterable[tuple[str, str]]) -> tuple[list[str], bool]:
    recipients = recipients_plan(contacts)
    if recipients:
        return recipients, False
    return admin_recipients(), True


def link_user_allowed(user) -> bool:
    """Whether a reminder's sign-in link may sign this user in: never an inactive, staff or superuser account."""
    return bool(user.is_active and not user.is_staff and not user.is_superuser)


def link_user_is_contact(user, token: Token) -> bool:
    """Whether the user's address (normalized) is one of the token's contacts now."""
    address = normalized(getattr(user, user.USERNAME_FIELD, "") or "")
    return address is not None and address in recipients_for(token)


def link_users_get_or_create(*, emails: set[str]) -> dict[str, object]:
    """Users that reminder links sign in, by normalized address (the USERNAME_FIELD holds it), created without a
    usable password when missing. Two queries, three more when some are created.

    No user is created for an address of a staff or superuser account, and inactive, staff and superuser accounts
    are left out: a link in an email must never open the admin nor revive a disabled account.
    """
    if not emails:
        return {}
    user_model = get_user_model()
    field = user_model.USERNAME_FIELD
    email_field = user_model.get_email_field_name()
    staff_addresses = {
        address
        for pair in user_model.objects.filter(Q(is_staff=True) | Q(is_superuser=True)).values_list(
            field, email_field
        )
        for address in map(normalized, pair)
        if address is not None
    }

    def fetch() -> dict[str, object]:
        return {getattr(u, field): u for u in user_model.objects.filter(**{f"{field}__in": emails})}

    users = fetch()
    missing = emails - users.keys() - staff_addresses
    if missing:
        new = []
        for email in sorted(missing):
            user = user_model(**{field: email, email_field: email})
            user.set_unusable_password()
            new.append(user)
        user_model.objects.bulk_create(
            new, ignore_conflicts=True
        )  # a concurrent delivery may create them too
        users = fetch()
    return {e: u for e, u in users.items() if e not in staff_addresses and link_user_allowed(u)}


# ------------------------------------------------------------------------------------------------------------------
# Sweep
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepResult:
    today: dt.date
    queued: int  # reminders
    messages: int  # one per (reminder, recipient)
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


def _contacts_by_token(token_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    """(email, role) of each token's contacts: one query for a whole batch (SQLite, admin re-queueing)."""
    contacts: dict[int, list[tuple[str, str]]] = {}
    rows = Token.contacts.through.objects.filter(token_id__in=token_ids).values_list(
        "token_id", "contact__email", "contact__role"
    )
    for token_id, email, role in rows:
        contacts.setdefault(token_id, []).append((email, role))
    return contacts


_SQLITE_CHUNK = 500  # rows per statement on SQLite (its limit on parameters)


def _insert(
    table: str, columns: list[str], rows: list[tuple], *, casts: list[str], fixed: dict, returning=""
):
    """INSERT … ON CONFLICT DO NOTHING [RETURNING …] of `rows` plus `fixed` columns (one value for every row).

    On PostgreSQL the rows travel as one array per column (unnest), whatever their number: no parameter limit,
    little to parse. SQLite (make run) gets VALUES rows, by chunks. Returns the RETURNING rows.
    """
    if not rows:
        return []
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in [*columns, *fixed])
    tail = " ON CONFLICT DO NOTHING" + (f" RETURNING {returning}" if returning else "")
    out: list[tuple] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{cast}[]" for cast in casts)
            aliases = ", ".join(f"c{i}" for i in range(len(columns)))
            sql = (
                f"INSERT INTO {quote(table)} ({names}) "  # noqa: S608
                f"SELECT {aliases}, {', '.join(['%s'] * len(fixed))} "
                f"FROM unnest({arrays}) AS u({aliases}){tail}"
            )
            cursor.execute(sql, [*fixed.values(), *(list(col) for col in zip(*rows, strict=True))])
            return cursor.fetchall() if returning else []
        row_sql = "(" + ", ".join(["%s"] * (len(columns) + len(fixed))) + ")"
        for i in range(0, len(rows), _SQLITE_CHUNK):
            chunk = rows[i : i + _SQLITE_CHUNK]
            sql = f"INSERT INTO {quote(table)} ({names}) VALUES {', '.join([row_sql] * len(chunk))}{tail}"  # noqa: S608
            cursor.execute(sql, [v for row in chunk for v in (*row, *fixed.values())])
            if returning:
                out += cursor.fetchall()
    return out


def _with_contacts(due_tokens_qs):
    """On PostgreSQL, each due token's contacts as an array of 'role:email' in the same query: one probe of the
    link table's (token, contact) index per due token. (A second query for the batch's contacts, `token_id IN
    (…)`, was planned as a sequential scan of the whole link table: 0.6 s per batch for 1M tokens.)"""
    from django.contrib.postgres.expressions import ArraySubquery
    from django.db.models.functions import Concat

    links = (
        Token.contacts.through.objects.filter(token_id=OuterRef("pk"))
        .annotate(entry=Concat("contact__role", Value(":"), "contact__email", output_field=TextField()))
        .values("entry")
    )
    return due_tokens_qs.annotate(contact_list=ArraySubquery(links))


def _queue(due: list[tuple], now: dt.datetime) -> tuple[int, int]:
    """Insert the ledger rows of `due` (token_id, expires_at, threshold, route[, contacts as 'role:email']) and
    their messages, one per recipient. Two queries (three without the contacts) whatever the batch's size; returns
    (reminders, messages) inserted."""
    if due and len(due[0]) == 5:
        contacts = {row[0]: [tuple(reversed(e.split(":", 1))) for e in row[4]] for row in due}
    else:
        contacts = _contacts_by_token([row[0] for row in due])
    reminders, plans = [], {}
    for token_id, expires_at, threshold, route, *_ in due:
        recipients, to_admins = _recipients_with_fallback(contacts.get(token_id, ()))
        plans[token_id] = (recipients, to_admins)
        status, error = ("pending", "") if recipients else ("failed", NO_RECIPIENT)
        reminders.append((token_id, threshold, expires_at, route, status, error, json.dumps(recipients)))
    inserted = _insert(
        Reminder._meta.db_table,
        ["token_id", "threshold", "expires_at", "route", "status", "last_error", "recipients"],
        reminders,
        casts=["bigint", "smallint", "timestamptz", "varchar", "varchar", "text", "jsonb"],
        fixed={"created_at": now, "updated_at": now},
        returning="id, token_id",
    )
    messages = [
        (reminder_id, email, plans[token_id][1])
        for reminder_id, token_id in sorted(inserted)
        for email in plans[token_id][0]
    ]
    for reminder_id, token_id in inserted:
        if not plans[token_id][0]:
            logger.error("reminder %s: token %s has no contact and ADMINS is empty", reminder_id, token_id)
    _insert(
        ReminderMessage._meta.db_table,
        ["reminder_id", "email", "to_admins"],
        messages,
        casts=["bigint", "varchar", "boolean"],
        fixed={
            "status": ReminderStatus.PENDING.value,
            "attempts": 0,
            "last_error": "",
            "next_attempt_at": now,
            "claimed_by": "",
            "message_id": "",
            "created_at": now,
            "updated_at": now,
        },
    )
    return len(inserted), len(messages)


def reminders_sweep(*, today: dt.date | None = None, batch_size: int | None = None) -> SweepResult:
    """Queue the reminders due on `today` (default: today in TIME_ZONE) with their messages, batch by batch of
    tokens, each batch one transaction of three queries: due tokens with their contacts, ledger rows, messages
    (on SQLite, a fourth one reads the contacts)."""
    started_at = timezone.now()
    today = today or validity.today()
    batch_size = batch_size or settings.REMINDER_SWEEP_BATCH
    fields = ["id", "expires_at", "due_threshold", "origin"]
    base = due_tokens(today=today)
    if connection.vendor == "postgresql":
        base, fields = _with_contacts(base), [*fields, "contact_list"]
    base = base.values_list(*fields)
    queued = messages = batches = 0
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
            added = _queue(rows, timezone.now())
            queued += added[0]
            messages += added[1]
        if len(rows) < batch_size:
            break
        last = (rows[-1][1], rows[-1][0])
    SweepRun.objects.create(
        day=today, started_at=started_at, finished_at=timezone.now(), queued=queued, batches=batches
    )
    logger.info(
        "reminders sweep %s: %d reminders (%d messages) queued in %d batches",
        today,
        queued,
        messages,
        batches,
    )
    return SweepResult(today=today, queued=queued, messages=messages, batches=batches)


# ------------------------------------------------------------------------------------------------------------------
# Delivery
# ------------------------------------------------------------------------------------------------------------------
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


def _email_data(message: ReminderMessage, token: Token, users: dict, today: dt.date) -> emails.ReminderEmail:
    """What one recipient's email shows: their own address and sign-in link only, and how many others got it."""
    reminder = message.reminder
    url = emails.action_url(reminder.route, token.public_id)
    link = ""
    user = None if message.to_admins else users.get(message.email)
    if user is not None:
        link = url + get_query_string(user, scope=magic_link_scope(token.public_id))
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
            data = _email_data(message, message.reminder.token, users, today)
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


# ------------------------------------------------------------------------------------------------------------------
# Admin actions
# ------------------------------------------------------------------------------------------------------------------
def _locked(reminder_ids: Iterable[int]) -> list[Reminder]:
    """The ledger rows, locked in id order (as reminders_settle locks them: no deadlock between the two)."""
    return list(Reminder.objects.filter(pk__in=set(reminder_ids)).select_for_update().order_by("pk"))


def _requeue(reminders: list[Reminder], failed, by, now: dt.datetime) -> int:
    """Put the `failed` messages back in the outbox, due now, with a fresh attempt count; reopen their reminders."""
    note = f"remis en file par {by}" if by else "remis en file"
    count = failed.filter(status=ReminderStatus.FAILED).update(
        status=ReminderStatus.PENDING, attempts=0, next_attempt_at=now, updated_at=now, last_error=note
    )
    reopened = ReminderMessage.objects.filter(reminder_id=OuterRef("pk"), status=ReminderStatus.PENDING)
    Reminder.objects.filter(pk__in=[r.pk for r in reminders], status=ReminderStatus.FAILED).filter(
        Exists(reopened)
    ).update(status=ReminderStatus.PENDING, last_error=note, updated_at=now)
    if count:
        from .tasks import deliver_reminders

        transaction.on_commit(deliver_reminders.delay)
    return count


@transaction.atomic
def reminders_requeue(*, reminder_ids: Iterable[int], by=None) -> int:
    """Every failed message of these reminders back in the outbox; a failed reminder that never had a message (no
    contact and no ADMINS when it was queued) gets its recipients now. Returns the number of messages queued."""
    now = timezone.now()
    reminders = _locked(reminder_ids)
    _add_missing_messages([r for r in reminders if r.status == ReminderStatus.FAILED], now)
    return _requeue(reminders, ReminderMessage.objects.filter(reminder__in=reminders), by, now)


@transaction.atomic
def reminder_messages_requeue(*, message_ids: Iterable[int], by=None) -> int:
    """These failed messages back in the outbox. Returns the number of messages queued."""
    now = timezone.now()
    message_ids = list(message_ids)
    reminders = _locked(
        ReminderMessage.objects.filter(pk__in=message_ids).values_list("reminder_id", flat=True)
    )
    return _requeue(
        reminders, ReminderMessage.objects.filter(pk__in=message_ids, reminder__in=reminders), by, now
    )


def _add_missing_messages(reminders: list[Reminder], now: dt.datetime) -> None:
    """Failed (messages to be requeued) for reminders that have none, to the recipients the token has now."""
    with_messages = set(
        ReminderMessage.objects.filter(reminder__in=reminders).values_list("reminder_id", flat=True)
    )
    bare = [r for r in reminders if r.pk not in with_messages]
    if not bare:
        return
    contacts = _contacts_by_token([r.token_id for r in bare])
    new = []
    for reminder in bare:
        recipients, to_admins = _recipients_with_fallback(contacts.get(reminder.token_id, ()))
        Reminder.objects.filter(pk=reminder.pk).update(recipients=recipients, updated_at=now)
        new += [
            ReminderMessage(reminder=reminder, email=e, to_admins=to_admins, status=ReminderStatus.FAILED)
            for e in recipients
        ]
    ReminderMessage.objects.bulk_create(new, ignore_conflicts=True)

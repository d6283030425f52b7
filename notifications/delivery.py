"""Delivery of the queued reminder messages: claim, render, send, settle.

Delivery is the email outbox loop (notifications.mailer.deliver): it claims due messages with SELECT … FOR UPDATE
SKIP LOCKED under a lease (status `sending`), so several workers never send the same message, and records each
message's outcome right after its send, so a killed worker re-sends at most one. What is reminders' own: the batch
context read once (cancellations, sign-in links, pending requests, pre-fill) and the email. After each batch the ledger rows of its messages are settled from their messages
(reminders_settle). What an email says is decided here, from the data as it is at sending time (the token's
pending request, what its renewal form will be pre-filled with), not when the sweep queued it.
"""

import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, Max, OuterRef, Q, Subquery, Value, prefetch_related_objects
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format
from sesame.utils import get_query_string

from tokens import prefill, validity
from tokens.models import Origin, Token

from . import emails, pending
from .mailer import DeliveryResult, EmailOutbox, claim, deliver
from .models import OPEN_STATUSES, Reminder, ReminderMessage, ReminderStatus, WebhookEndpoint
from .recipients import link_users_get_or_create, magic_link_scope, recipients_for
from .rules import ineligibility, reminders_declined_token_ids
from .webhooks import token_payload, webhook_emit

logger = logging.getLogger(__name__)


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
        return tuple(str(group) for group in prefill.field_groups(list(fields)))


@dataclass(frozen=True)
class _Context:
    """What the batch's emails say beyond their reminder, read once for the batch at sending time."""

    today: dt.date
    cancelled: (
        dict  # message id -> why it is no longer sent (token ineligible, recipient no longer a contact)
    )
    users: dict  # address -> the user whose sign-in link the email carries
    pending: dict  # token id -> the open AccessRequest that would replace it
    prefill: dict  # token id -> tokens.prefill.PrefillSource (api_gouv tokens without a pending request)


def _batch_context(
    messages: list[ReminderMessage], now: dt.datetime, today: dt.date | None = None
) -> _Context:
    """The batch's tokens with their contacts and privileges (one object per token, fetched once for all its
    messages), which messages are cancelled, the sign-in users of the others, pending requests and pre-fill."""
    tokens: dict[int, Token] = {}
    for message in messages:
        message.reminder.token = tokens.setdefault(message.reminder.token_id, message.reminder.token)
    prefetch_related_objects(list(tokens.values()), "contacts", "privileges")
    declined = reminders_declined_token_ids(tokens)
    contacts_now = {pk: set(recipients_for(t)) for pk, t in tokens.items()}
    cancelled = {}
    for message in messages:
        reminder, token = message.reminder, message.reminder.token
        reason = ineligibility(reminder, token, now, declined=token.pk in declined)
        if not reason and not message.to_admins and message.email not in contacts_now[token.pk]:
            reason = "destinataire retiré des contacts du jeton"
        if reason:
            cancelled[message.pk] = reason
    users = link_users_get_or_create(
        emails={m.email for m in messages if not m.to_admins and m.pk not in cancelled}
    )
    requests = pending.replacing_requests(tokens)
    renewable = [t for t in tokens.values() if t.pk not in requests and t.origin == Origin.API_GOUV]
    return _Context(
        today=today or validity.local_date(now),
        cancelled=cancelled,
        users=users,
        pending=requests,
        prefill=prefill.renewal_prefill_sources(tokens=renewable),
    )


def _email_data(message: ReminderMessage, token: Token, context: _Context) -> emails.ReminderEmail:
    """What one recipient's email shows: their own address and sign-in link only, and how many others got it."""
    reminder = message.reminder
    url = emails.action_url(reminder.route, token.public_id)
    link = ""
    user = None if message.to_admins else context.users.get(message.email)
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
            prefill_date=_long_date(source.date) if source.from_request else "",
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
        days_left=validity.days_left(token.expires_at, context.today),
        recipient=message.email,
        other_recipients=0 if message.to_admins else max(len(reminder.recipients) - 1, 0),
        action_url=url,
        personal_link=link,
        admins_fallback=message.to_admins,
        **extra,
    )


def _cancel_reason(message: ReminderMessage, context: _Context) -> str:
    return context.cancelled.get(message.pk, "")


def _build(message: ReminderMessage, context: _Context, connection):
    data = _email_data(message, message.reminder.token, context)
    return emails.build_message(data, connection, msgid=emails.message_id(f"reminder.{message.pk}"))


def _settle_reminders(messages: list[ReminderMessage]) -> None:
    reminders_settle(reminder_ids={m.reminder_id for m in messages})


KIND = EmailOutbox(
    model=ReminderMessage,
    label="reminder message",
    build=_build,
    rows=lambda rows: rows.select_related("reminder__token__client").order_by("next_attempt_at", "id"),
    context=_batch_context,
    cancel=_cancel_reason,
    settled=_settle_reminders,
)
OUTBOX = KIND.outbox


def reminder_messages_claim(
    *, worker: str, batch_size: int, now: dt.datetime | None = None
) -> list[ReminderMessage]:
    """Claim up to `batch_size` messages for `worker` (notifications.mailer.claim); returns them with their reminder,
    token and client."""
    return claim(KIND, worker=worker, limit=batch_size, now=now)


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

    The one email outbox loop (notifications.mailer.deliver): claims in short transactions (SKIP LOCKED, lease),
    each message's outcome (sent / retry later / failed / cancelled) committed right after its send, so a SIGKILL
    re-sends at most the one message in flight, once the lease of its claim has expired; the ledger rows of each
    batch settled from their messages. Ledger rows a dead worker left unsettled are settled first.
    """
    reminders_settle_stale()
    kind = KIND
    if today is not None:
        kind = dataclasses.replace(KIND, context=functools.partial(_batch_context, today=today))
    return deliver(kind, batch_size=batch_size, max_batches=max_batches)

"""Requests that would replace a token, as reminders see them, and the instructors' alert at the last threshold.

A request *replaces* a token when it was made for it (renewal, extension, or the new request that takes over a
legacy demarches-simplifiees token): its validation supersedes the token. While one is open, the token's reminders
still go (the token still stops at its expiry if nobody decides) but say so. Drafts count: a draft was never sent,
so nobody will decide it, and the renewal link would lead to it anyway; the reminder tells its holders to send it.

When a token reaches the last reminder threshold (the smallest) with its request submitted or sent back for changes
(an instructor's decision is what it waits for; a draft waits for nobody), the instructors get one alert: one
DeadlineAlert row per (token, expiry), inserted ON CONFLICT DO NOTHING, with one outbox message per instructor
(DeadlineAlertMessage, unique per alert and address) delivered by the email outbox loop: each instructor is told
once, and a retry after a partial failure reaches only those not told yet.
"""

import datetime as dt
from collections.abc import Iterable

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from tokenmgr.outbox import OutboxStatus
from tokens import validity
from tokens.models import AccessRequest, Token
from tokens.selectors import instructor_emails

from .mailer import EmailOutbox, deliver, outbox_email
from .models import DeadlineAlert, DeadlineAlertMessage
from .rules import eligible_tokens, last_threshold

# Open requests an instructor has to decide.
UNDECIDED_STATES = (AccessRequest.State.SUBMITTED, AccessRequest.State.CHANGES_REQUESTED)


def replacing_requests(token_ids: Iterable[int]) -> dict[int, AccessRequest]:
    """The open request that would replace each token (the newest, if several), in one query."""
    ids = list(token_ids)
    if not ids:
        return {}
    found: dict[int, AccessRequest] = {}
    for request in AccessRequest.objects.open().filter(token_id__in=ids).order_by("-created_at", "-id"):
        found.setdefault(request.token_id, request)
    return found


def request_date(request: AccessRequest) -> dt.date:
    """The date a request is known by: when it was (last) submitted, else when it was started."""
    return validity.local_date(request.submitted_at or request.created_at)


def near_deadline_tokens(*, today: dt.date | None = None) -> QuerySet:
    """Eligible tokens that reached the last reminder threshold on `today` and have not expired."""
    today = today or validity.today()
    start = validity.start_of_day(today + dt.timedelta(days=1))
    end = validity.start_of_day(today + dt.timedelta(days=last_threshold() + 1))
    return eligible_tokens(Token.objects.all()).expiring_between(start, end)


def requests_near_deadline(qs: QuerySet, *, today: dt.date | None = None) -> QuerySet:
    """The undecided requests of `qs` whose token reached the last reminder threshold (the admin's filter)."""
    tokens = near_deadline_tokens(today=today).filter(pk=OuterRef("token_id"))
    return qs.filter(state__in=UNDECIDED_STATES).filter(Exists(tokens))


def deadline_alerts_queue(*, today: dt.date | None = None) -> int:
    """Insert the alerts due on `today` (one per token and expiry, whatever the number of runs) and their messages,
    one per instructor (unique per alert and address); returns how many alerts are new.

    An alert queued while no instructor had an address gets its messages at the next run that finds one."""
    now = timezone.now()
    requests = requests_near_deadline(AccessRequest.objects.all(), today=today).select_related("token")
    due: dict[tuple[int, dt.datetime], DeadlineAlert] = {}
    # A token's latest request is the one its alert names.
    for r in requests.order_by("token_id", "-created_at"):
        due.setdefault(
            (r.token_id, r.token.expires_at),
            DeadlineAlert(
                token_id=r.token_id, expires_at=r.token.expires_at, access_request=r, created_at=now
            ),
        )
    queued = DeadlineAlert.objects.filter(token_id__in={token_id for token_id, _ in due})
    for key in queued.values_list("token_id", "expires_at"):
        due.pop(key, None)
    # A concurrent run may insert some of these first: the constraint keeps one alert per token and expiry.
    DeadlineAlert.objects.bulk_create(due.values(), ignore_conflicts=True)
    unaddressed = DeadlineAlert.objects.filter(sent_at__isnull=True).exclude(
        Exists(DeadlineAlertMessage.objects.filter(alert=OuterRef("pk")))
    )
    to = instructor_emails()
    DeadlineAlertMessage.objects.bulk_create(
        [
            DeadlineAlertMessage(
                alert_id=pk, email=address, next_attempt_at=now, created_at=now, updated_at=now
            )
            for pk in unaddressed.values_list("pk", flat=True)
            for address in to
        ],
        ignore_conflicts=True,
    )
    return len(due)


def _build(message: DeadlineAlertMessage, context, connection):
    """One instructor's message (no one sees the others' addresses)."""
    request, token = message.alert.access_request, message.alert.token
    data = {
        "access_request": request,
        "client": request.client,
        "token": token,
        "expires_on": validity.local_date(token.expires_at),
        "request_date": request_date(request),
        "admin_url": settings.SITE_URL + reverse("admin:tokens_accessrequest_change", args=[request.pk]),
    }
    return outbox_email(
        "emails/deadline_alert",
        data,
        row=message,
        key="deadline",
        connection=connection,
        headers={"X-Access-Request-Id": str(request.public_id)},
    )


def deadline_alerts_settle(messages: list[DeadlineAlertMessage]) -> None:
    """An alert is sent once every instructor's message is (its sent_at: the last send); until then it shows its
    messages' latest error."""
    ids = {m.alert_id for m in messages}
    messages_of = DeadlineAlertMessage.objects.filter(alert_id=OuterRef("pk"))
    unsent = DeadlineAlert.objects.filter(pk__in=ids, sent_at__isnull=True)
    done = ~Exists(messages_of.exclude(status=OutboxStatus.SENT))
    unsent.filter(done).update(
        sent_at=Subquery(messages_of.order_by("-sent_at").values("sent_at")[:1]), last_error=""
    )
    latest_error = messages_of.exclude(last_error="").order_by("-updated_at", "-id").values("last_error")[:1]
    unsent.exclude(done).update(last_error=Coalesce(Subquery(latest_error), Value("")))


KIND = EmailOutbox(
    model=DeadlineAlertMessage,
    label="deadline alert message",
    build=_build,
    rows=lambda rows: rows.select_related("alert__access_request__client", "alert__token").order_by("id"),
    settled=deadline_alerts_settle,
)


def deadline_alerts_send() -> int:
    """Send the instructors' messages not sent yet, each once, through the email outbox loop
    (notifications.mailer.deliver): a failed one is retried with backoff, and only it. Returns how many were sent."""
    return deliver(KIND).sent


def deadline_alerts_run(*, today: dt.date | None = None) -> int:
    """Queue the alerts due on `today`, then send what is unsent; returns how many messages were sent."""
    deadline_alerts_queue(today=today)
    return deadline_alerts_send()

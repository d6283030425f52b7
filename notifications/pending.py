"""Requests that would replace a token, as reminders see them, and the instructors' alert at the last threshold.

A request *replaces* a token when it was made for it (renewal, extension, or the new request that takes over a
legacy demarches-simplifiees token): its validation supersedes the token. While one is open, the token's reminders
still go (the token still stops at its expiry if nobody decides) but say so. Drafts count: a draft was never sent,
so nobody will decide it, and the renewal link would lead to it anyway; the reminder tells its holders to send it.

When a token reaches the last reminder threshold (the smallest) with its request submitted or sent back for changes
(an instructor's decision is what it waits for; a draft waits for nobody), the instructors get one alert: one
DeadlineAlert row per (token, expiry), inserted ON CONFLICT DO NOTHING, sent once.
"""

import datetime as dt
import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.urls import reverse
from django.utils import timezone

from tokenmgr.mail import build_email
from tokens import validity
from tokens.models import AccessRequest, Token
from tokens.selectors import instructor_emails

from .models import DeadlineAlert
from .rules import eligible_tokens, last_threshold

logger = logging.getLogger(__name__)

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
    """Insert the alerts due on `today` (one per token and expiry, whatever the number of runs); returns how many
    are new."""
    now = timezone.now()
    requests = requests_near_deadline(AccessRequest.objects.all(), today=today).select_related("token")
    rows = [
        DeadlineAlert(token_id=r.token_id, expires_at=r.token.expires_at, access_request=r, created_at=now)
        for r in requests.order_by("token_id", "-created_at")
    ]
    if not rows:
        return 0
    before = DeadlineAlert.objects.count()
    DeadlineAlert.objects.bulk_create(rows, ignore_conflicts=True)
    return DeadlineAlert.objects.count() - before


def _alert_message(alert: DeadlineAlert, to: str):
    request, token = alert.access_request, alert.token
    context = {
        "access_request": request,
        "client": request.client,
        "token": token,
        "expires_on": validity.local_date(token.expires_at),
        "request_date": request_date(request),
        "admin_url": settings.SITE_URL + reverse("admin:tokens_accessrequest_change", args=[request.pk]),
    }
    return build_email(
        "emails/deadline_alert", context, to=[to], headers={"X-Access-Request-Id": str(request.public_id)}
    )


def deadline_alerts_send() -> int:
    """Send the alerts not sent yet, each once: rows locked (SKIP LOCKED) while sent, marked sent in the same
    transaction. A failed send stays unsent and is tried again at the next run. Returns how many were sent."""
    to = instructor_emails()
    if not to:
        return 0
    sent = 0
    with transaction.atomic():
        alerts = list(
            DeadlineAlert.objects.filter(sent_at__isnull=True)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("access_request__client", "token")
            .order_by("id")
        )
        for alert in alerts:
            try:  # one message per instructor: no one sees the others' addresses
                for address in to:
                    _alert_message(alert, address).send()
            except Exception as exc:
                logger.warning("deadline alert %s not sent: %s", alert.pk, exc)
                DeadlineAlert.objects.filter(pk=alert.pk).update(
                    last_error=f"{type(exc).__name__}: {exc}"[:2000]
                )
                continue
            DeadlineAlert.objects.filter(pk=alert.pk).update(sent_at=timezone.now(), last_error="")
            sent += 1
    return sent


def deadline_alerts_run(*, today: dt.date | None = None) -> int:
    """Queue the alerts due on `today`, then send what is unsent; returns how many were sent."""
    deadline_alerts_queue(today=today)
    return deadline_alerts_send()

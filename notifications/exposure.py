"""Exposure alerts: when a live token's secret is reported exposed (tokens.exposure), each of its recipients gets a
message of their own, once per token however often the secret is reported (ExposureAlert is unique per
(token, email)). Queued in the reporting transaction, delivered by a Celery task through the email outbox loop
(notifications.mailer.deliver: claim under a lease, send, settle), retried with the reminders' backoff.

The message names the token by its display prefix only (never its secret), says whether it was revoked, and links to
a renewal pre-filled from the token (the route of its origin, as reminders do) and to the token's page. The address
where the secret was seen is shown only when the report came from a registered reporter or from the holder: an
anonymous report must not put a link of its choosing in front of the token's contacts.
"""

import datetime as dt
import logging
from dataclasses import dataclass

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone

from tokens.models import Token, TokenExposure
from tokens.signals import token_exposed

from . import emails
from .mailer import DeliveryResult, EmailOutbox, deliver, outbox_email
from .models import ExposureAlert
from .recipients import admin_recipients, recipients_for

logger = logging.getLogger(__name__)

TEMPLATE_PREFIX = "emails/exposure_alert"


# ------------------------------------------------------------------------------------------------------------------
# Queue
# ------------------------------------------------------------------------------------------------------------------
def exposure_alerts_queue(*, token: Token, exposure: TokenExposure, revoked: bool) -> int:
    """One pending alert per recipient of `token` (its contacts, normalized and deduplicated, or the ADMINS when it
    has none) not already alerted; delivery is enqueued once the transaction commits. Returns how many were new."""
    recipients, to_admins = recipients_for(token), False
    if not recipients:
        recipients, to_admins = admin_recipients(), True
    now = timezone.now()
    existing = set(ExposureAlert.objects.filter(token=token).values_list("email", flat=True))
    new = [
        ExposureAlert(
            token=token,
            exposure=exposure,
            email=email,
            to_admins=to_admins,
            revoked=revoked,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        for email in recipients
        if email not in existing
    ]
    if not new:
        return 0
    ExposureAlert.objects.bulk_create(new, ignore_conflicts=True)  # the constraint decides under concurrency
    transaction.on_commit(deliver_exposure_alerts.delay)
    return len(new)


@receiver(token_exposed, dispatch_uid="notifications.exposure.token_exposed")
def _token_exposed(sender, *, token, exposure, revoked, **kwargs):
    exposure_alerts_queue(token=token, exposure=exposure, revoked=revoked)


# ------------------------------------------------------------------------------------------------------------------
# Deliver
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExposureEmail:
    """What one alert shows."""

    recipient: str
    token_public_id: str
    token_label: str
    token_prefix: str
    client_name: str
    revoked: bool
    seen_at: str  # the address where the secret was seen, when the report is attributable; else ""
    source: str
    renewal_url: str
    token_url: str


def _email_data(alert: ExposureAlert) -> ExposureEmail:
    token, exposure = alert.token, alert.exposure
    attributable = exposure is not None and (
        exposure.reporter_id is not None or exposure.reported_by_id is not None
    )
    return ExposureEmail(
        recipient=alert.email,
        token_public_id=str(token.public_id),
        token_label=token.label,
        token_prefix=token.secret_prefix,
        client_name=token.client.name,
        revoked=alert.revoked,
        seen_at=exposure.url if attributable else "",
        source=exposure.source if attributable else "",
        renewal_url=emails.action_url(token.origin, token.public_id),
        token_url=settings.SITE_URL + reverse("portal_token", args=[token.public_id]),
    )


def build_message(alert: ExposureAlert, context=None, connection=None) -> EmailMessage:
    """One recipient's alert (its Message-ID the same at every attempt)."""
    data = _email_data(alert)
    return outbox_email(
        TEMPLATE_PREFIX,
        {"a": data},
        row=alert,
        key="exposure",
        connection=connection,
        headers={
            "X-Token-Id": data.token_public_id,
            "X-Token-Exposed": "revoked" if data.revoked else "flagged",
        },
    )


KIND = EmailOutbox(
    model=ExposureAlert,
    label="exposure alert",
    build=build_message,
    rows=lambda rows: rows.select_related("token__client", "exposure").order_by("id"),
)
OUTBOX = KIND.outbox


def exposure_alerts_deliver(
    *, batch_size: int | None = None, now: dt.datetime | None = None
) -> DeliveryResult:
    """Send every due alert, batch after batch (notifications.mailer.deliver: claimed under a lease, each outcome
    recorded right after its send)."""
    return deliver(KIND, now=now, batch_size=batch_size)


@shared_task(name="notifications.deliver_exposure_alerts", acks_late=True, ignore_result=True)
def deliver_exposure_alerts() -> int:
    """Send the exposure alerts that are due (new ones and retries whose backoff elapsed)."""
    return exposure_alerts_deliver().sent

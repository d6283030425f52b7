"""Thin Celery tasks of the portal; each is safe to run twice."""

import datetime as dt

from celery import shared_task
from django.utils import timezone

from tokens import validity
from tokens.models import Token

from . import services, webhooks

EXPIRY_LOOKBACK_DAYS = 7
# Webhook tasks run on their own queue ("webhooks", tokenmgr/celery.py): a slow endpoint never delays reminders.
SOFT_TIME_LIMIT, TIME_LIMIT = webhooks.task_time_limits()


@shared_task(acks_late=True, ignore_result=True)
def account_email_send(kind: str, email: str, next_url: str = "") -> int:
    """Login link, password reset or sign-up link: per-address limit, lookup and sending (portal.services)."""
    return services.account_email_send(kind=kind, email=email, next_url=next_url)


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=SOFT_TIME_LIMIT, time_limit=TIME_LIMIT)
def webhook_deliver(delivery_id: int) -> str | None:
    return webhooks.webhook_delivery_attempt(delivery_id=delivery_id)


@shared_task(acks_late=True, ignore_result=True)
def webhooks_retry_due() -> int:
    """Re-enqueue overdue pending deliveries (every few minutes in beat)."""
    ids = webhooks.deliveries_due()
    for delivery_id in ids:
        webhooks.enqueue_delivery(delivery_id)
    return len(ids)


def tokens_expired_recently(*, now: dt.datetime | None = None):
    """Tokens (not revoked) that expired during the last days: a missed daily run catches up."""
    now = now or timezone.now()
    start = validity.start_of_day(validity.local_date(now) - dt.timedelta(days=EXPIRY_LOOKBACK_DAYS))
    return (
        Token.objects.filter(revoked_at__isnull=True, expires_at__gte=start, expires_at__lte=now)
        .filter(client__webhooks__disabled_at__isnull=True)
        .distinct()
        .select_related("client", "renewed_by")
        .prefetch_related("privileges")
        .order_by("expires_at", "id")
    )


@shared_task(acks_late=True, ignore_result=True)
def webhooks_emit_expired() -> int:
    """Daily: one `token.expired` event per token that expired (deduplicated by token and expiry)."""
    emitted = 0
    for token in tokens_expired_recently():
        event = webhooks.webhook_emit(
            client=token.client,
            event_type="token.expired",
            payload={"token": webhooks.token_payload(token)},
            dedup_key=f"token.expired:{token.public_id}:{token.expires_at:%Y%m%d%H%M%S}",
        )
        emitted += event is not None
    return emitted

"""Thin Celery tasks: each calls one service and is safe to run twice (the ledger's constraint and the
SKIP LOCKED claim make repeats harmless). The beat schedule is in tokenmgr/celery.py."""

import datetime as dt

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from tokens import validity
from tokens.models import Token

from . import delivery, pending, sweep, webhooks

EXPIRY_LOOKBACK_DAYS = 7
# Webhook tasks run on their own queue ("webhooks", tokenmgr/celery.py): a slow endpoint never delays reminders.
SOFT_TIME_LIMIT, TIME_LIMIT = webhooks.task_time_limits()


@shared_task(name="notifications.sweep_reminders", acks_late=True, ignore_result=True)
def sweep_reminders(today: str | None = None) -> int:
    """Daily: queue the reminders due today, then hand them to delivery once committed; alert the instructors of
    the undecided requests whose token reached the last threshold."""
    day = dt.date.fromisoformat(today) if today else None
    result = sweep.reminders_sweep(today=day)
    pending.deadline_alerts_run(today=day)
    if result.queued:
        transaction.on_commit(deliver_reminders.delay)
    return result.queued


@shared_task(name="notifications.deliver_reminders", acks_late=True, ignore_result=True)
def deliver_reminders() -> int:
    """Send every pending reminder that is due (new ones and retries whose backoff elapsed)."""
    return delivery.reminders_deliver().sent


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

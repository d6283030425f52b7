"""Reads on reminders that are more than one QuerySet call."""

import datetime as dt

from django.db.models import Count, Min

from .models import ReminderMessage, ReminderStatus, SweepRun, WebhookDelivery

UNSENT_STATUSES = (ReminderStatus.PENDING, ReminderStatus.SENDING)


def last_sweep_at() -> dt.datetime | None:
    """When the latest reminder sweep completed (None if never): /healthz is unhealthy past 26 h."""
    return SweepRun.objects.order_by("-finished_at").values_list("finished_at", flat=True).first()


def last_sweep() -> SweepRun | None:
    """The latest completed reminder sweep (None if none ever completed)."""
    return SweepRun.objects.order_by("-finished_at").only("started_at", "finished_at", "queued").first()


def reminder_counts_by_status() -> dict[str, int]:
    """How many reminder messages (one per recipient) are in each state, every state listed: one aggregate query."""
    counts = dict.fromkeys(ReminderStatus.values, 0)
    counts.update(ReminderMessage.objects.order_by().values_list("status").annotate(count=Count("pk")))
    return counts


def oldest_unsent_reminder_at() -> dt.datetime | None:
    """When the oldest reminder message not sent yet (waiting, retrying or being sent) was queued; None if none is."""
    return ReminderMessage.objects.filter(status__in=UNSENT_STATUSES).aggregate(oldest=Min("created_at"))[
        "oldest"
    ]


def webhook_delivery_counts_by_status() -> dict[str, int]:
    """How many webhook deliveries are in each state, every state listed: one aggregate query."""
    counts = dict.fromkeys(WebhookDelivery.Status.values, 0)
    counts.update(WebhookDelivery.objects.order_by().values_list("status").annotate(count=Count("pk")))
    return counts

"""Thin Celery tasks: each calls one service and is safe to run twice (the ledger's constraint and the
SKIP LOCKED claim make repeats harmless). The beat schedule is in tokenmgr/celery.py."""

import datetime as dt

from celery import shared_task
from django.db import transaction

from . import delivery, pending, sweep


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

"""Thin Celery task: delivery of the due evolution notices (safe to run twice: SKIP LOCKED claims under a lease).
The beat schedule is in tokenmgr/celery.py."""

from celery import shared_task

from . import services


@shared_task(name="evolutions.deliver_notices", acks_late=True, ignore_result=True)
def deliver_notices() -> int:
    """Send every evolution notice that is due (the day's digests and retries whose backoff elapsed)."""
    return services.evolution_notices_deliver().sent

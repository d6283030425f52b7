from celery import shared_task

from .services import counters_rollup


@shared_task(name="availability.rollup_counters")
def rollup_counters() -> dict[str, int]:
    """Daily: prune fine counters beyond retention. Safe to run twice or concurrently."""
    return counters_rollup()

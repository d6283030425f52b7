import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokenmgr.settings")

app = Celery("tokenmgr")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Webhook work goes to its own queue, so that a slow integrator endpoint never holds up reminders. Workers consume
# both queues (`-Q celery,webhooks`), or two pools run side by side, one per queue.
WEBHOOK_QUEUE = "webhooks"
app.conf.task_routes = {
    "notifications.tasks.webhook_deliver": {"queue": WEBHOOK_QUEUE},
    "notifications.tasks.webhooks_retry_due": {"queue": WEBHOOK_QUEUE},
    "notifications.tasks.webhooks_emit_expired": {"queue": WEBHOOK_QUEUE},
}


@app.on_after_configure.connect
def setup_periodic_tasks(sender: Celery, **kwargs) -> None:
    """Beat schedule, in code. crontab() hours are read in CELERY_TIMEZONE, which is TIME_ZONE."""
    from django.conf import settings

    # Reminders: the daily sweep, and a frequent pass that picks up retries whose backoff elapsed.
    sweep_every = settings.REMINDER_SWEEP_INTERVAL_SECONDS or crontab(
        hour=settings.REMINDER_SWEEP_HOUR, minute=0
    )
    sender.add_periodic_task(
        sweep_every, sender.signature("notifications.sweep_reminders"), name="reminders: daily sweep"
    )
    sender.add_periodic_task(
        float(settings.REMINDER_DELIVERY_INTERVAL),
        sender.signature("notifications.deliver_reminders"),
        name="reminders: deliver due retries",
    )
    # Evolutions: the day's digests once due, and retries whose backoff elapsed.
    sender.add_periodic_task(
        float(settings.EVOLUTION_DELIVERY_INTERVAL),
        sender.signature("evolutions.deliver_notices"),
        name="evolutions: deliver notices",
    )
    # Exposure alerts whose backoff elapsed (new ones are enqueued when the report commits).
    sender.add_periodic_task(
        float(settings.REMINDER_DELIVERY_INTERVAL),
        sender.signature("notifications.deliver_exposure_alerts"),
        name="exposure alerts: deliver due retries",
    )
    # Availability: prune fine-grained counters beyond their retention.
    sender.add_periodic_task(
        crontab(hour=3, minute=30),
        sender.signature("availability.rollup_counters"),
        name="availability: rollup",
    )
    # Webhooks: `token.expired` events, and deliveries whose backoff elapsed.
    sender.add_periodic_task(
        crontab(hour=0, minute=15),
        sender.signature("notifications.tasks.webhooks_emit_expired"),
        name="webhooks: expiries",
    )
    sender.add_periodic_task(
        300.0, sender.signature("notifications.tasks.webhooks_retry_due"), name="webhooks: due retries"
    )
    # Access-request forms: documents kept for a form that was never sent again.
    sender.add_periodic_task(
        3600.0, sender.signature("tokens.purge_pending_uploads"), name="requests: purge pending uploads"
    )

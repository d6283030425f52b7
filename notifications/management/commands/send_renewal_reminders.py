"""Run the daily sweep for a day, deliver what it queued, print the counts (messages: one per recipient)."""

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from notifications.delivery import reminders_deliver
from notifications.pending import deadline_alerts_run
from notifications.sweep import reminders_sweep


class Command(BaseCommand):
    help = "Envoie les rappels de renouvellement dus (le même balayage que Celery beat), puis les délivre."

    def add_arguments(self, parser):
        parser.add_argument("--today", help="jour du balayage, AAAA-MM-JJ (défaut : aujourd'hui)")

    def handle(self, *args, today=None, **options):
        try:
            day = dt.date.fromisoformat(today) if today else None
        except ValueError as exc:
            raise CommandError(f"--today: date invalide {today!r} (attendu AAAA-MM-JJ)") from exc
        sweep = reminders_sweep(today=day)
        delivery = reminders_deliver(today=day)
        alerts = deadline_alerts_run(today=day)
        self.stdout.write(
            f"queued: {sweep.queued}\nmessages: {sweep.messages}\n"
            f"sent: {delivery.sent}\nskipped: {delivery.skipped}\nfailed: {delivery.failed}\n"
            f"deadline alerts: {alerts}"
        )

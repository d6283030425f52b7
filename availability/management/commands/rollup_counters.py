"""python manage.py rollup_counters: drop minute / hour counters beyond their retention (the coarser ones remain)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from availability.services import counters_rollup


class Command(BaseCommand):
    help = "Supprime les compteurs par minute et par heure au-delà de leur durée de rétention."

    def handle(self, *args, **options):
        deleted = counters_rollup()
        self.stdout.write(
            f"{deleted['minute']} compteurs par minute (> {settings.AVAILABILITY_MINUTE_RETENTION_DAYS} j) et "
            f"{deleted['hour']} par heure (> {settings.AVAILABILITY_HOUR_RETENTION_DAYS} j) supprimés"
        )

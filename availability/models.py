"""Call counters, their retention state, and incidents.

Counters, not calls: `(endpoint, bucket, status) -> count` at three resolutions, all written by the same ingest
transaction (see services.counters_add): minutes (epoch minutes, UTC), hours (epoch hours, UTC) and days (TIME_ZONE
calendar days). `rollup_counters` later drops minute and hour rows beyond their retention and records how far back
each resolution is still complete (`RetentionMark`), so that reads stay exact and cost O(days), not O(calls).
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tokenmgr.markup import markdown_html
from tokens.models import Endpoint


class MinuteCounter(models.Model):
    pk = models.CompositePrimaryKey("endpoint", "minute", "status")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="+", db_index=False)
    minute = models.BigIntegerField(_("minute (époque UTC)"))
    status = models.SmallIntegerField(_("code HTTP"))
    count = models.BigIntegerField(_("appels"), default=0)

    class Meta:
        verbose_name = _("compteur par minute")

    def __str__(self) -> str:
        return f"{self.endpoint_id}@{self.minute}:{self.status}={self.count}"


class HourCounter(models.Model):
    pk = models.CompositePrimaryKey("endpoint", "hour", "status")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="+", db_index=False)
    hour = models.IntegerField(_("heure (époque UTC)"))
    status = models.SmallIntegerField(_("code HTTP"))
    count = models.BigIntegerField(_("appels"), default=0)

    class Meta:
        verbose_name = _("compteur par heure")

    def __str__(self) -> str:
        return f"{self.endpoint_id}@{self.hour}h:{self.status}={self.count}"


class DayCounter(models.Model):
    pk = models.CompositePrimaryKey("endpoint", "day", "status")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="+", db_index=False)
    day = models.DateField(_("jour (TIME_ZONE)"))
    status = models.SmallIntegerField(_("code HTTP"))
    count = models.BigIntegerField(_("appels"), default=0)

    class Meta:
        verbose_name = _("compteur par jour")
        # PostgreSQL also has the covering index daycounter_covering (endpoint, day, status) INCLUDE (count),
        # created by migration 0003 (SQLite has no INCLUDE): provider_availabilities reads a window of days with
        # an index-only scan in key order and a streaming per-day aggregate.

    def __str__(self) -> str:
        return f"{self.endpoint_id}@{self.day}:{self.status}={self.count}"


class EndpointActivity(models.Model):
    """Time of the latest call seen per endpoint (the real-time page shows it)."""

    endpoint = models.OneToOneField(Endpoint, on_delete=models.CASCADE, primary_key=True, related_name="+")
    last_call_at = models.DateTimeField(_("dernier appel"))

    class Meta:
        verbose_name = _("activité d'un endpoint")

    def __str__(self) -> str:
        return f"{self.endpoint_id}: {self.last_call_at}"


class RetentionMark(models.Model):
    """Rows of `resolution` are complete for buckets >= `complete_from` (older ones were pruned by the rollup)."""

    class Resolution(models.TextChoices):
        MINUTE = "minute", _("minute")
        HOUR = "hour", _("heure")

    resolution = models.CharField(max_length=8, choices=Resolution.choices, primary_key=True)
    complete_from = models.BigIntegerField(_("complet depuis (époque, dans l'unité)"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("rétention")

    def __str__(self) -> str:
        return f"{self.resolution} >= {self.complete_from}"


class IngestBatch(models.Model):
    """A batch received on POST /api/watchdoge/calls with an Idempotency-Key: a retry is not counted twice.

    Keys are scoped per ingesting token: two tokens may use the same key, and neither ever sees the other's batch.
    """

    key = models.CharField(max_length=128)
    token_id = models.BigIntegerField(null=True)
    accepted = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("lot d'appels reçu")
        permissions = [("ingest_calls", _("Peut envoyer des appels (POST /api/watchdoge/calls)"))]
        constraints = [models.UniqueConstraint(fields=["token_id", "key"], name="ingestbatch_token_key")]

    def __str__(self) -> str:
        return self.key


class IngestedFile(models.Model):
    """A JSON Lines content given to `ingest_calls`, identified by its SHA-256, and how far it has been counted.

    Each chunk's counters and the new `committed_offset` are written in the same transaction, so a run that
    crashed is resumed by the next run on the same content from the last committed chunk, and a completed content
    is never counted again.
    """

    fingerprint = models.CharField(_("empreinte SHA-256"), max_length=64, unique=True)
    size = models.BigIntegerField(_("taille (octets)"))
    name = models.CharField(_("nom"), max_length=255, blank=True)
    committed_offset = models.BigIntegerField(_("octets comptés"), default=0)
    committed_lines = models.BigIntegerField(_("lignes comptées"), default=0)
    accepted = models.BigIntegerField(_("appels comptés"), default=0)
    rejected = models.BigIntegerField(_("lignes rejetées"), default=0)
    started_at = models.DateTimeField(_("commencé le"), default=timezone.now)
    completed_at = models.DateTimeField(_("terminé le"), null=True, blank=True)

    class Meta:
        verbose_name = _("fichier d'appels ingéré")

    def __str__(self) -> str:
        return f"{self.name or self.fingerprint[:12]} ({self.committed_offset}/{self.size})"


class IncidentQuerySet(models.QuerySet):
    def ongoing(self, now=None):
        now = now or timezone.now()
        return self.filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now), starts_at__lte=now)

    def upcoming(self, now=None):
        return self.filter(starts_at__gt=now or timezone.now())

    def past(self, now=None):
        return self.filter(ends_at__lte=now or timezone.now())


class Incident(models.Model):
    title = models.CharField(_("titre"), max_length=255)
    endpoints = models.ManyToManyField(
        Endpoint, related_name="incidents", blank=True, verbose_name=_("endpoints concernés")
    )
    starts_at = models.DateTimeField(_("début"))
    ends_at = models.DateTimeField(
        _("fin"), null=True, blank=True, help_text=_("Vide tant qu'il est en cours.")
    )
    planned = models.BooleanField(_("maintenance programmée"), default=False)
    description = models.TextField(_("description (Markdown)"), blank=True)
    created_at = models.DateTimeField(_("créé le"), default=timezone.now)
    updated_at = models.DateTimeField(_("modifié le"), auto_now=True)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        verbose_name = _("incident")
        verbose_name_plural = _("incidents")
        ordering = ["-starts_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gte=models.F("starts_at")),
                name="incident_ends_after_start",
            )
        ]

    def __str__(self) -> str:
        return self.title

    def state(self, now=None) -> str:
        now = now or timezone.now()
        if self.starts_at > now:
            return "upcoming"
        if self.ends_at is not None and self.ends_at <= now:
            return "past"
        return "ongoing"

    @property
    def description_html(self) -> str:
        """Markdown rendered, then sanitised by an allow-list (nh3): raw HTML, scripts and JS links are dropped."""
        return markdown_html(self.description)

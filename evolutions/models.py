"""Evolutions of the API: what integrators must follow (endpoints, call parameters, new APIs, data sources, security
and volume), written by staff, published, corrected by revisions, and told to the people whose tokens they affect.

- `Evolution`: the entry as it reads now. A draft is edited freely; once published, every change is a new
  `EvolutionRevision` (kept and shown: "corrigé le …"), never a silent edit (services.evolution_correct).
- `EvolutionNotice`: the outbox of the notices, one message per person (normalized address) and digest day, unique
  per (email, digest_on), with the entries of that day attached (`EvolutionNoticeEntry`, unique per (notice,
  evolution)). Several entries published the same day make one message; a publication retried or run twice hits
  the constraints instead of queueing twice. Delivered under a lease like the reminders (tokenmgr.outbox).
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tokenmgr.markup import markdown_html
from tokenmgr.outbox import OutboxMessage, OutboxStatus, outbox_indexes
from tokens.models import Endpoint, Privilege


class EvolutionKind(models.TextChoices):
    ENDPOINTS = "endpoints", _("Endpoints")
    PARAMETERS = "parameters", _("Paramètres d'appel")
    NEW_API = "new_api", _("Nouvelles API")
    DATA_SOURCE = "data_source", _("Changement de la source de données")
    SECURITY_VOLUME = "security_volume", _("Sécurité et volumétrie")


class EvolutionStatus(models.TextChoices):
    DRAFT = "draft", _("brouillon")
    PUBLISHED = "published", _("publiée")


class EvolutionQuerySet(models.QuerySet):
    def published(self):
        return self.filter(status=EvolutionStatus.PUBLISHED)

    def affecting_privileges(self, privilege_ids):
        """Entries one of whose endpoints is granted by one of these privileges."""
        return self.filter(endpoints__privileges__in=list(privilege_ids)).distinct()


class Evolution(models.Model):
    public_id = models.UUIDField(_("identifiant public"), default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(_("nature"), max_length=32, choices=EvolutionKind.choices)
    title = models.CharField(_("titre"), max_length=200)
    body = models.TextField(_("texte (Markdown)"), blank=True)
    endpoints = models.ManyToManyField(
        Endpoint, related_name="evolutions", blank=True, verbose_name=_("endpoints concernés")
    )
    effective_on = models.DateField(_("date d'effet"))
    # A removal: announced as deprecated from `deprecation_at`, gone at `sunset_at` (the HTTP headers' dates).
    deprecation_at = models.DateTimeField(_("dépréciation (Deprecation)"), null=True, blank=True)
    sunset_at = models.DateTimeField(_("retrait (Sunset)"), null=True, blank=True)
    status = models.CharField(
        _("état"), max_length=16, choices=EvolutionStatus.choices, default=EvolutionStatus.DRAFT
    )
    published_at = models.DateTimeField(_("publiée le"), null=True, blank=True)
    revision = models.PositiveSmallIntegerField(_("révision"), default=0)  # 0 until published
    corrected_at = models.DateTimeField(_("corrigée le"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("créée le"), default=timezone.now)
    updated_at = models.DateTimeField(_("modifiée le"), default=timezone.now)

    objects = EvolutionQuerySet.as_manager()

    class Meta:
        verbose_name = _("évolution")
        verbose_name_plural = _("évolutions")
        ordering = ["-published_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(sunset_at__isnull=True)
                | Q(deprecation_at__isnull=False, sunset_at__gte=models.F("deprecation_at")),
                name="evolution_sunset_after_deprecation",
            ),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(published_at__isnull=False, revision__gte=1),
                name="evolution_published_has_date",
            ),
        ]
        indexes = [models.Index(fields=["status", "sunset_at"], name="evolution_status_sunset_idx")]

    def __str__(self) -> str:
        return self.title

    @property
    def body_html(self):
        return markdown_html(self.body)

    @property
    def is_removal(self) -> bool:
        return self.sunset_at is not None

    def privileges(self):
        """The privileges that grant one of its endpoints."""
        return Privilege.objects.filter(endpoints__evolutions=self).distinct()


class EvolutionRevision(models.Model):
    """A published state of an entry: revision 1 at publication, then one per correction (with its note)."""

    evolution = models.ForeignKey(
        Evolution, on_delete=models.CASCADE, related_name="revisions", verbose_name=_("évolution")
    )
    number = models.PositiveSmallIntegerField(_("révision"))
    kind = models.CharField(_("nature"), max_length=32, choices=EvolutionKind.choices)
    title = models.CharField(_("titre"), max_length=200)
    body = models.TextField(_("texte (Markdown)"), blank=True)
    endpoints = models.JSONField(_("endpoints concernés"), default=list, blank=True)
    effective_on = models.DateField(_("date d'effet"))
    deprecation_at = models.DateTimeField(_("dépréciation (Deprecation)"), null=True, blank=True)
    sunset_at = models.DateTimeField(_("retrait (Sunset)"), null=True, blank=True)
    note = models.TextField(_("motif de la correction"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("le"), default=timezone.now)

    class Meta:
        verbose_name = _("révision d'une évolution")
        verbose_name_plural = _("révisions des évolutions")
        ordering = ["evolution_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["evolution", "number"], name="evolution_revision_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.evolution_id} r{self.number}"


NoticeStatus = OutboxStatus


class EvolutionNotice(OutboxMessage):
    """The outbox: the evolutions of one digest day told to one person. Claimed under a lease, sent, settled."""

    digest_on = models.DateField(_("jour du récapitulatif"))
    evolutions = models.ManyToManyField(
        Evolution, through="EvolutionNoticeEntry", related_name="notices", verbose_name=_("évolutions")
    )
    # Public ids of the tokens the sent message listed.
    tokens = models.JSONField(_("jetons cités"), default=list, blank=True)

    class Meta:
        verbose_name = _("avis d'évolution")
        verbose_name_plural = _("avis d'évolution")
        ordering = ["-digest_on", "id"]
        constraints = [
            models.UniqueConstraint(fields=["email", "digest_on"], name="evolution_notice_once_per_day"),
        ]
        indexes = outbox_indexes(pending="evolution_notice_due_idx", sending="evolution_notice_sending_idx")

    def __str__(self) -> str:
        return f"{self.email} — {self.digest_on} ({self.get_status_display()})"


class EvolutionNoticeEntry(models.Model):
    notice = models.ForeignKey(EvolutionNotice, on_delete=models.CASCADE, db_index=False)
    evolution = models.ForeignKey(Evolution, on_delete=models.CASCADE, related_name="+")

    class Meta:
        verbose_name = _("évolution d'un avis")
        verbose_name_plural = _("évolutions des avis")
        constraints = [
            models.UniqueConstraint(fields=["notice", "evolution"], name="evolution_notice_entry_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.notice_id} — {self.evolution_id}"

"""Renewal reminders: one table that is both the ledger (what was decided) and the outbox (what is to be sent).

A row is unique per (token, threshold, expires_at): a second sweep, a second beat or a redelivered task hits the
constraint instead of sending twice. A new expiry (token renewed in place) starts a fresh series.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tokens.models import Origin, Token


class ReminderStatus(models.TextChoices):
    PENDING = "pending", _("à envoyer")
    SENDING = "sending", _("en cours d'envoi")  # claimed by a worker until lease_until
    SENT = "sent", _("envoyé")
    FAILED = "failed", _("en échec")
    CANCELLED = "cancelled", _("annulé")


class ReminderQuerySet(models.QuerySet):
    def pending_due(self, now):
        return self.filter(status=ReminderStatus.PENDING, next_attempt_at__lte=now)

    def lease_expired(self, now):
        """Rows a worker claimed and never settled (it crashed): claimable again."""
        return self.filter(status=ReminderStatus.SENDING, lease_until__lte=now)


class Reminder(models.Model):
    token = models.ForeignKey(
        Token, on_delete=models.CASCADE, related_name="reminders", verbose_name=_("jeton")
    )
    threshold = models.PositiveSmallIntegerField(_("seuil (jours)"))
    expires_at = models.DateTimeField(_("expiration visée"))
    route = models.CharField(_("parcours"), max_length=32, choices=Origin.choices)
    status = models.CharField(
        _("état"), max_length=16, choices=ReminderStatus.choices, default=ReminderStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("tentatives"), default=0)
    last_error = models.TextField(_("dernière erreur"), blank=True)
    next_attempt_at = models.DateTimeField(_("prochaine tentative"), default=timezone.now)
    sent_at = models.DateTimeField(_("envoyé le"), null=True, blank=True)
    # Delivery claim: while `sending`, the row belongs to claimed_by until lease_until (then any worker may take it).
    lease_until = models.DateTimeField(_("réservé jusqu'au"), null=True, blank=True)
    claimed_by = models.CharField(_("réservé par"), max_length=64, blank=True, default="", db_default="")
    message_id = models.CharField(_("Message-ID"), max_length=255, blank=True)
    recipients = models.JSONField(_("destinataires"), default=list, blank=True)
    created_at = models.DateTimeField(_("créé le"), default=timezone.now)
    updated_at = models.DateTimeField(_("modifié le"), default=timezone.now)

    objects = ReminderQuerySet.as_manager()

    class Meta:
        verbose_name = _("rappel de renouvellement")
        verbose_name_plural = _("rappels de renouvellement")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["token", "threshold", "expires_at"], name="reminder_once_per_expiry"
            ),
        ]
        indexes = [
            # The delivery claim: pending rows by due time; partial, so it stays tiny.
            models.Index(
                fields=["next_attempt_at", "id"],
                name="reminder_pending_due_idx",
                condition=Q(status="pending"),
            ),
            # Crashed workers' claims, by lease end.
            models.Index(
                fields=["lease_until", "id"],
                name="reminder_sending_lease_idx",
                condition=Q(status="sending"),
            ),
            models.Index(fields=["status", "threshold"], name="reminder_status_idx"),
        ]

    def __str__(self) -> str:
        return f"J-{self.threshold} — {self.token_id} ({self.get_status_display()})"


class SweepRun(models.Model):
    """One completed reminder sweep: its day, when it ran and what it queued (/healthz reads the latest)."""

    day = models.DateField(_("jour"))
    started_at = models.DateTimeField(_("début"))
    finished_at = models.DateTimeField(_("fin"), db_index=True)
    queued = models.PositiveIntegerField(_("rappels mis en file"), default=0)
    batches = models.PositiveIntegerField(_("lots"), default=0)

    class Meta:
        verbose_name = _("balayage")
        verbose_name_plural = _("balayages des rappels")
        ordering = ["-finished_at"]

    def __str__(self) -> str:
        return f"{self.day} ({self.queued})"

"""The outbox of exposure alerts: one message per (token, recipient), so that each recipient is told once however
often the secret is reported. Imported by notifications.models, so that it is a model of the app."""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tokens.models import Token, TokenExposure

from .models import ReminderStatus


class ExposureAlert(models.Model):
    """One recipient told that a token's secret was exposed. Claimed under a lease (tokenmgr.outbox), sent, settled."""

    # No index of its own: the (token, email) constraint's index starts with it.
    token = models.ForeignKey(
        Token,
        on_delete=models.CASCADE,
        related_name="exposure_alerts",
        verbose_name=_("jeton"),
        db_index=False,
    )
    exposure = models.ForeignKey(
        TokenExposure, null=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("exposition")
    )
    email = models.CharField(_("destinataire"), max_length=254)  # normalized (accounts.identity)
    to_admins = models.BooleanField(_("aux administrateurs"), default=False)  # the token had no contact
    revoked = models.BooleanField(_("jeton révoqué par le signalement"), default=False)
    status = models.CharField(
        _("état"), max_length=16, choices=ReminderStatus.choices, default=ReminderStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("tentatives"), default=0)
    last_error = models.TextField(_("dernière erreur"), blank=True)
    next_attempt_at = models.DateTimeField(_("prochaine tentative"), default=timezone.now)
    lease_until = models.DateTimeField(_("réservé jusqu'au"), null=True, blank=True)
    claimed_by = models.CharField(_("réservé par"), max_length=64, blank=True, default="")
    sent_at = models.DateTimeField(_("envoyé le"), null=True, blank=True)
    message_id = models.CharField(_("Message-ID"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("créé le"), default=timezone.now)
    updated_at = models.DateTimeField(_("modifié le"), default=timezone.now)

    class Meta:
        verbose_name = _("alerte de secret exposé")
        verbose_name_plural = _("alertes de secrets exposés")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["token", "email"], name="exposure_alert_once_per_recipient"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at", "id"],
                name="exposure_alert_pending_idx",
                condition=Q(status="pending"),
            ),
            models.Index(
                fields=["lease_until", "id"], name="exposure_alert_sending_idx", condition=Q(status="sending")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.get_status_display()})"

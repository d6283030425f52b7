"""The outbox of exposure alerts: one message per (token, recipient), so that each recipient is told once however
often the secret is reported. Imported by notifications.models, so that it is a model of the app."""

from django.db import models
from django.utils.translation import gettext_lazy as _

from tokenmgr.outbox import OutboxMessage, once_per_recipient, outbox_indexes
from tokens.models import Token, TokenExposure


class ExposureAlert(OutboxMessage):
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
    to_admins = models.BooleanField(_("aux administrateurs"), default=False)  # the token had no contact
    revoked = models.BooleanField(_("jeton révoqué par le signalement"), default=False)

    class Meta:
        verbose_name = _("alerte de secret exposé")
        verbose_name_plural = _("alertes de secrets exposés")
        ordering = ["-created_at", "-id"]
        constraints = [once_per_recipient("token", name="exposure_alert_once_per_recipient")]
        indexes = outbox_indexes(pending="exposure_alert_pending_idx", sending="exposure_alert_sending_idx")

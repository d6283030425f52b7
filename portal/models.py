"""The integrator's portal: reminder opt-outs, private calendar feeds and webhooks."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tokens.models import Client, Token


class ReminderOptOut(models.Model):
    """ "Ce jeton n'est plus utilisé": no more reminders for this token (reversible until its expiry)."""

    token = models.OneToOneField(
        Token, on_delete=models.CASCADE, related_name="reminder_opt_out", verbose_name=_("jeton")
    )
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(_("le"), default=timezone.now)

    class Meta:
        verbose_name = _("renouvellement décliné")
        verbose_name_plural = _("renouvellements déclinés")

    def __str__(self) -> str:
        return str(self.token)


class CalendarFeed(models.Model):
    """A user's private ICS address. Only a digest of the key is stored; regenerating replaces it."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calendar_feed"
    )
    key_digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_fetched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("flux calendrier")
        verbose_name_plural = _("flux calendrier")

    def __str__(self) -> str:
        return str(self.user)


class WebhookEndpoint(models.Model):
    """An HTTPS URL of a client that receives signed JSON events."""

    client = models.ForeignKey(
        Client, on_delete=models.CASCADE, related_name="webhooks", verbose_name=_("client")
    )
    url = models.URLField(_("URL"), max_length=500)
    # HMAC-SHA256 signing key: the server must keep it to sign; shown once to the integrator.
    secret = models.CharField(max_length=128, editable=False)
    description = models.CharField(_("description"), max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("créé le"), default=timezone.now)
    disabled_at = models.DateTimeField(_("désactivé le"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook")
        verbose_name_plural = _("webhooks")
        ordering = ["client", "created_at", "id"]

    def __str__(self) -> str:
        return self.url

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None


class WebhookEvent(models.Model):
    class Type(models.TextChoices):
        REMINDER_SENT = "token.reminder_sent", _("rappel envoyé")
        RENEWAL_VALIDATED = "token.renewal_validated", _("renouvellement validé")
        REVOKED = "token.revoked", _("jeton révoqué")
        EXPIRED = "token.expired", _("expiration du jeton")
        PING = "ping", _("test")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="webhook_events")
    type = models.CharField(_("type"), max_length=40, choices=Type.choices)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(_("créé le"), default=timezone.now)
    # Makes an event emitted twice (a task run twice) a no-op, e.g. "token.expired:<public_id>".
    dedup_key = models.CharField(max_length=120, null=True, blank=True, unique=True)

    class Meta:
        verbose_name = _("événement webhook")
        verbose_name_plural = _("événements webhook")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class WebhookDelivery(models.Model):
    """One event for one endpoint: an outbox row, claimed under a lease by the worker that sends it."""

    class Status(models.TextChoices):
        PENDING = "pending", _("en attente")
        SENDING = "sending", _("en cours d'envoi")  # claimed by a worker until lease_until
        DELIVERED = "delivered", _("livré")
        FAILED = "failed", _("échec")

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    # Null once the integrator deleted the endpoint: the delivery stays in the history, with the URL it went to.
    endpoint = models.ForeignKey(
        WebhookEndpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    url = models.CharField(_("URL"), max_length=500, blank=True)
    status = models.CharField(_("état"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("tentatives"), default=0)
    next_attempt_at = models.DateTimeField(_("prochaine tentative"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("livré le"), null=True, blank=True)
    lease_until = models.DateTimeField(_("réservé jusqu'au"), null=True, blank=True)
    claimed_by = models.CharField(_("réservé par"), max_length=64, blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("livraison webhook")
        verbose_name_plural = _("livraisons webhook")
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint("event", "endpoint", name="webhook_delivery_once")]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx"),
            models.Index(
                fields=["lease_until", "id"],
                name="webhook_delivery_lease_idx",
                condition=Q(status="sending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.url or self.endpoint}"


class WebhookAttempt(models.Model):
    class Cause(models.TextChoices):
        """Why an attempt ended, in words an integrator understands (the technical detail is in `error`)."""

        HTTP = "http", _("réponse HTTP")
        TIMEOUT = "timeout", _("délai dépassé")
        CERTIFICATE = "certificate", _("certificat invalide")
        TLS = "tls", _("échec de la connexion sécurisée (TLS)")
        ADDRESS = "address", _("adresse refusée")
        PORT = "port", _("port refusé")
        DNS = "dns", _("nom de domaine introuvable")
        REFUSED = "refused", _("connexion refusée")
        NETWORK = "network", _("erreur réseau")
        INVALID_RESPONSE = "invalid_response", _("réponse invalide")
        DISABLED = "disabled", _("webhook désactivé")
        DELETED = "deleted", _("webhook supprimé")
        INTERRUPTED = "interrupted", _("envoi interrompu trop de fois")

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    cause = models.CharField(_("cause"), max_length=20, choices=Cause.choices, blank=True)
    # Technical detail (exception, resolved address) for staff, in the admin only.
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("tentative")
        verbose_name_plural = _("tentatives")
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.cause_label}"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def cause_label(self) -> str:
        """The plain-language outcome shown to the integrator."""
        if self.status_code is not None:
            return _("réponse HTTP %(code)d") % {"code": self.status_code}
        if self.cause:
            return self.get_cause_display()
        return _("erreur réseau")

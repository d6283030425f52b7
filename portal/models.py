"""The integrator's portal: reminder opt-outs, private calendar feeds and webhooks."""

import uuid

from django.conf import settings
from django.db import models
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
    class Status(models.TextChoices):
        PENDING = "pending", _("en attente")
        DELIVERED = "delivered", _("livré")
        FAILED = "failed", _("échec")

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(_("état"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("tentatives"), default=0)
    next_attempt_at = models.DateTimeField(_("prochaine tentative"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("livré le"), null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("livraison webhook")
        verbose_name_plural = _("livraisons webhook")
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint("event", "endpoint", name="webhook_delivery_once")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx")]

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint}"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("tentative")
        verbose_name_plural = _("tentatives")
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error[:40]}"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

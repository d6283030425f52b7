"""Renewal reminders: the ledger (what was decided, one row per reminder) and the outbox (one message per recipient).

A `Reminder` is unique per (token, threshold, expires_at): a second sweep, a second beat or a redelivered task hits
the constraint instead of queueing twice. The sweep writes, in the same transaction, one `ReminderMessage` per
recipient, unique per (reminder, email): each recipient gets a message of their own, sent once. A new expiry (token
renewed in place) starts a fresh series.

The ledger's status sums up its messages (see delivery.reminders_settle): pending while one is still to be sent,
then sent (every message sent or cancelled), failed (one failed for good) or cancelled (all cancelled).
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tokenmgr.outbox import OutboxMessage, OutboxStatus, once_per_recipient, outbox_indexes
from tokens.models import Client, Origin, Token

# The ledger's states are its messages' (a message `sending` is claimed by a worker until lease_until).
ReminderStatus = OutboxStatus


# Messages still to be settled: their reminder is in progress.
OPEN_STATUSES = (ReminderStatus.PENDING, ReminderStatus.SENDING)


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
    last_error = models.TextField(_("dernière erreur"), blank=True)
    sent_at = models.DateTimeField(_("envoyé le"), null=True, blank=True)
    # Normalized addresses of its messages, requester first (or the ADMINS when the token has no contact).
    recipients = models.JSONField(_("destinataires"), default=list, blank=True)
    created_at = models.DateTimeField(_("créé le"), default=timezone.now)
    updated_at = models.DateTimeField(_("modifié le"), default=timezone.now)

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
            # Reminders in progress (their settlement after a crashed worker); partial, so it stays tiny.
            models.Index(fields=["id"], name="reminder_open_idx", condition=Q(status="pending")),
            models.Index(fields=["status", "threshold"], name="reminder_status_idx"),
        ]

    def __str__(self) -> str:
        return f"J-{self.threshold} — {self.token_id} ({self.get_status_display()})"


class ReminderMessage(OutboxMessage):
    """The outbox: one reminder to one recipient. Claimed under a lease, sent, settled right after its send."""

    # No index of its own: the (reminder, email) constraint's index starts with it.
    reminder = models.ForeignKey(
        Reminder,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("rappel"),
        db_index=False,
    )
    to_admins = models.BooleanField(_("aux administrateurs"), default=False)  # the token had no contact

    class Meta:
        verbose_name = _("message de rappel")
        verbose_name_plural = _("messages de rappel")
        ordering = ["reminder_id", "id"]
        constraints = [once_per_recipient("reminder", name="reminder_message_once_per_recipient")]
        indexes = outbox_indexes(pending="reminder_msg_pending_due_idx", sending="reminder_msg_sending_idx")


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


# Reminder opt-outs and webhooks: outbound notifications other than the reminder emails.
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


class DeadlineAlert(models.Model):
    """The instructors were told that a token reached the last reminder threshold with the request that would
    replace it still undecided: one row per (token, expiry), so that they are told once, whatever the number of
    sweeps, retries or beats."""

    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="+", verbose_name=_("jeton"))
    expires_at = models.DateTimeField(_("expiration visée"))
    access_request = models.ForeignKey(
        "tokens.AccessRequest", on_delete=models.CASCADE, related_name="+", verbose_name=_("demande")
    )
    created_at = models.DateTimeField(_("créée le"), default=timezone.now)
    sent_at = models.DateTimeField(_("envoyée le"), null=True, blank=True)
    last_error = models.TextField(_("dernière erreur"), blank=True)

    class Meta:
        verbose_name = _("alerte d'échéance")
        verbose_name_plural = _("alertes d'échéance")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["token", "expires_at"], name="deadline_alert_once_per_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.token_id} — {self.expires_at:%Y-%m-%d}"


class DeadlineAlertMessage(OutboxMessage):
    """The outbox of a deadline alert: one message per instructor, written when the alert is queued, each sent once
    (a retry after a partial failure reaches only the instructors not told yet)."""

    # No index of its own: the (alert, email) constraint's index starts with it.
    alert = models.ForeignKey(
        DeadlineAlert,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("alerte"),
        db_index=False,
    )

    class Meta:
        verbose_name = _("message d'alerte d'échéance")
        verbose_name_plural = _("messages d'alerte d'échéance")
        ordering = ["alert_id", "id"]
        constraints = [once_per_recipient("alert", name="deadline_alert_once_per_instructor")]
        indexes = outbox_indexes(pending="deadline_msg_pending_idx", sending="deadline_msg_sending_idx")


from .models_exposure import ExposureAlert  # noqa: E402,F401  (a model of this app, in its own module)

"""Renewal reminders: the ledger (what was decided, one row per reminder) and the outbox (one message per recipient).

A `Reminder` is unique per (token, threshold, expires_at): a second sweep, a second beat or a redelivered task hits
the constraint instead of queueing twice. The sweep writes, in the same transaction, one `ReminderMessage` per
recipient, unique per (reminder, email): each recipient gets a message of their own, sent once. A new expiry (token
renewed in place) starts a fresh series.

The ledger's status sums up its messages (see services.reminders_settle): pending while one is still to be sent,
then sent (every message sent or cancelled), failed (one failed for good) or cancelled (all cancelled).
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tokens.models import Origin, Token


class ReminderStatus(models.TextChoices):
    PENDING = "pending", _("à envoyer")
    SENDING = "sending", _("en cours d'envoi")  # a message claimed by a worker until lease_until
    SENT = "sent", _("envoyé")
    FAILED = "failed", _("en échec")
    CANCELLED = "cancelled", _("annulé")


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


class ReminderMessage(models.Model):
    """The outbox: one reminder to one recipient. Claimed under a lease, sent, settled right after its send."""

    # No index of its own: the (reminder, email) constraint's index starts with it.
    reminder = models.ForeignKey(
        Reminder,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("rappel"),
        db_index=False,
    )
    email = models.CharField(_("destinataire"), max_length=254)  # normalized (accounts.identity)
    to_admins = models.BooleanField(_("aux administrateurs"), default=False)  # the token had no contact
    status = models.CharField(
        _("état"), max_length=16, choices=ReminderStatus.choices, default=ReminderStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("tentatives"), default=0)
    last_error = models.TextField(_("dernière erreur"), blank=True)
    next_attempt_at = models.DateTimeField(_("prochaine tentative"), default=timezone.now)
    # Delivery claim: while `sending`, the row belongs to claimed_by until lease_until (then any worker may take it).
    lease_until = models.DateTimeField(_("réservé jusqu'au"), null=True, blank=True)
    claimed_by = models.CharField(_("réservé par"), max_length=64, blank=True, default="")
    sent_at = models.DateTimeField(_("envoyé le"), null=True, blank=True)
    message_id = models.CharField(_("Message-ID"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("créé le"), default=timezone.now)
    updated_at = models.DateTimeField(_("modifié le"), default=timezone.now)

    class Meta:
        verbose_name = _("message de rappel")
        verbose_name_plural = _("messages de rappel")
        ordering = ["reminder_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["reminder", "email"], name="reminder_message_once_per_recipient"),
        ]
        indexes = [
            # The delivery claim: pending messages by due time; partial, so it stays tiny.
            models.Index(
                fields=["next_attempt_at", "id"],
                name="reminder_msg_pending_due_idx",
                condition=Q(status="pending"),
            ),
            # Crashed workers' claims, by lease end.
            models.Index(
                fields=["lease_until", "id"],
                name="reminder_msg_sending_idx",
                condition=Q(status="sending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.get_status_display()})"


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


from .models_exposure import ExposureAlert  # noqa: E402,F401  (a model of this app, in its own module)

"""Outbox rows delivered under a lease: claim in a short transaction, send outside it, settle on the claim.

A table qualifies when its rows have `status` (with a pending and a sending value), `next_attempt_at`, `lease_until`,
`claimed_by` and `attempts` (and optionally a timestamp every write refreshes, `touched`). The pattern:

1. `Outbox.claim` takes due pending rows (and rows whose worker died: `sending` with an expired lease) with
   SELECT … FOR UPDATE SKIP LOCKED, marks them `sending` until now + lease, stamped with the worker's id, in one
   short committed transaction, one more attempt counted: two workers never claim the same row, no lock is held
   afterwards, and a row that keeps killing its workers runs out of attempts;
2. the network call happens outside any transaction;
3. `Outbox.settle` records the outcome in one UPDATE conditioned on the claim (still `sending`, same worker): a
   worker that outlived its lease, whose row another worker took over, changes nothing.

Every email outbox table inherits `OutboxMessage` (its status, attempts, lease and outcome fields) and lists
`outbox_indexes` in its Meta; notifications.mailer delivers them all with one loop.
"""

import datetime as dt
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def worker_id() -> str:
    """Who claims: host, process and a random part (each run settles only its own claims)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff(attempts: int, *, base: float, factor: float, cap: float) -> dt.timedelta:
    """Delay before the next attempt after `attempts` failures: base, base·factor, base·factor², … capped."""
    return dt.timedelta(seconds=min(base * factor ** max(attempts - 1, 0), cap))


@dataclass(frozen=True)
class Outbox:
    model: type[models.Model]
    pending: str
    sending: str
    lease_seconds: Callable[[], float]
    touched: str | None = None  # a timestamp field set on every claim, settlement and release

    def _touch(self, fields: dict, now: dt.datetime) -> dict:
        if self.touched:
            fields.setdefault(self.touched, now)
        return fields

    def claimable(self, now: dt.datetime) -> models.QuerySet:
        """Due pending rows and rows whose claim expired (their worker died)."""
        objects = self.model._default_manager
        return objects.filter(status=self.pending, next_attempt_at__lte=now) | objects.filter(
            status=self.sending, lease_until__lte=now
        )

    def claim(
        self,
        *,
        worker: str,
        limit: int,
        now: dt.datetime | None = None,
        pks: Iterable[int] | None = None,
        **fields,
    ) -> list[int]:
        """Claim up to `limit` claimable rows (among `pks` when given) for `worker`, one attempt counted on each;
        returns their ids.

        Expired leases first, then due pending rows, each oldest first. `fields` are set on the claimed rows too.
        """
        now = now or timezone.now()
        objects = self.model._default_manager
        scope = objects.all() if pks is None else objects.filter(pk__in=list(pks))
        with transaction.atomic():
            ids = list(
                scope.filter(status=self.sending, lease_until__lte=now)
                .select_for_update(skip_locked=True)
                .order_by("lease_until", "pk")
                .values_list("pk", flat=True)[:limit]
            )
            if len(ids) < limit:
                ids += list(
                    scope.filter(status=self.pending, next_attempt_at__lte=now)
                    .select_for_update(skip_locked=True)
                    .order_by("next_attempt_at", "pk")
                    .values_list("pk", flat=True)[: limit - len(ids)]
                )
            if ids:
                objects.filter(pk__in=ids).update(
                    status=self.sending,
                    lease_until=now + dt.timedelta(seconds=self.lease_seconds()),
                    claimed_by=worker,
                    attempts=F("attempts") + 1,
                    **self._touch(fields, now),
                )
        return ids

    def claimed(self, pks: Iterable[int], *, worker: str) -> models.QuerySet:
        """The rows among `pks` that `worker`'s claim still holds."""
        return self.model._default_manager.filter(pk__in=list(pks), status=self.sending, claimed_by=worker)

    def settle(self, pk: int, *, worker: str, **fields) -> bool:
        """Record a claimed row's outcome (`fields`, its new status included) if `worker`'s claim still holds."""
        updated = self.claimed([pk], worker=worker).update(
            lease_until=None, **self._touch(fields, timezone.now())
        )
        return updated == 1

    def release(self, pks: Iterable[int], *, worker: str, **fields) -> int:
        """Give claimed rows that were not attempted back to the outbox: pending again, their attempt uncounted."""
        return self.claimed(pks, worker=worker).update(
            status=self.pending,
            lease_until=None,
            attempts=F("attempts") - 1,
            **self._touch(fields, timezone.now()),
        )


class OutboxStatus(models.TextChoices):
    """The states of an outbox row (and of the reminder ledger, which sums up its messages)."""

    PENDING = "pending", _("à envoyer")
    SENDING = "sending", _("en cours d'envoi")  # claimed by a worker until lease_until
    SENT = "sent", _("envoyé")
    FAILED = "failed", _("en échec")
    CANCELLED = "cancelled", _("annulé")


class OutboxQuerySet(models.QuerySet):
    def requeue(self, *, note: str = "") -> int:
        """Put the failed rows among these back in the outbox, due now, with a fresh attempt count."""
        now = timezone.now()
        return self.filter(status=OutboxStatus.FAILED).update(
            status=OutboxStatus.PENDING, attempts=0, next_attempt_at=now, updated_at=now, last_error=note
        )


class OutboxMessage(models.Model):
    """An email outbox row: one message to one recipient (`email`), claimed under a lease (Outbox), sent, settled.

    Concrete tables add what the message is about and their constraint; their Meta lists `outbox_indexes(...)`."""

    email = models.CharField(_("destinataire"), max_length=254)  # normalized (accounts.identity)
    status = models.CharField(
        _("état"), max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING
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

    objects = OutboxQuerySet.as_manager()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.email} ({self.get_status_display()})"


def once_per_recipient(subject: str, *, name: str) -> models.UniqueConstraint:
    """One message per subject (reminder, alert, token) and recipient: a second queueing hits the constraint."""
    return models.UniqueConstraint(fields=[subject, "email"], name=name)


def outbox_indexes(*, pending: str, sending: str) -> list[models.Index]:
    """The claim's two partial indexes (tiny: only the rows in flight): pending rows by due time, claimed rows by
    lease end (crashed workers' claims)."""
    return [
        models.Index(fields=["next_attempt_at", "id"], name=pending, condition=Q(status="pending")),
        models.Index(fields=["lease_until", "id"], name=sending, condition=Q(status="sending")),
    ]

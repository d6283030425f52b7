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
"""

import datetime as dt
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import models, transaction
from django.db.models import F
from django.utils import timezone


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

"""What waits for the instructors: how many submitted access requests, and since when the oldest one."""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Min
from django.utils import timezone

from .models import AccessRequest


@dataclass(frozen=True)
class QueueSummary:
    waiting: int
    oldest_submitted_at: dt.datetime | None
    now: dt.datetime

    @property
    def oldest_age(self) -> dt.timedelta | None:
        return None if self.oldest_submitted_at is None else self.now - self.oldest_submitted_at

    @property
    def oldest_days(self) -> int | None:
        age = self.oldest_age
        return None if age is None else age.days


def queue_summary(*, now: dt.datetime | None = None) -> QueueSummary:
    """One query: the count of submitted requests and the submission time of the oldest one."""
    row = AccessRequest.objects.filter(state=AccessRequest.State.SUBMITTED).aggregate(
        waiting=Count("id"), oldest=Min("submitted_at")
    )
    return QueueSummary(waiting=row["waiting"], oldest_submitted_at=row["oldest"], now=now or timezone.now())


def requester(access_request: AccessRequest) -> str:
    """The requester named in the request's form ("Nom <email>"), else the account that filed it."""
    contact = access_request.contact("requester")
    name, email = contact.get("name", ""), contact.get("email", "")
    if email:
        return f"{name} <{email}>" if name else email
    return str(access_request.applicant) if access_request.applicant_id else ""

"""Reads on reminders that are more than one QuerySet call."""

import datetime as dt

from .models import SweepRun


def last_sweep_at() -> dt.datetime | None:
    """When the latest reminder sweep completed (None if never): /healthz is unhealthy past 26 h."""
    return SweepRun.objects.order_by("-finished_at").values_list("finished_at", flat=True).first()

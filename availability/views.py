"""Public pages: real-time status, incidents, and the help page on rate limits and HTTP codes."""

from django.conf import settings
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.cache import cache_control

from . import selectors
from .models import Incident

REFRESH_SECONDS = 60


@cache_control(max_age=30, public=True)
def real_time(request):
    now = timezone.now()
    return render(
        request,
        "availability/real_time.html",
        {
            "endpoints": selectors.current_status(now=now),
            "now": now,
            "refresh_seconds": REFRESH_SECONDS,
            "window_minutes": settings.AVAILABILITY_STATUS_WINDOW_MINUTES,
            "down_percent": round(settings.AVAILABILITY_DOWN_RATIO * 100),
            "ongoing": selectors.incidents_overview(now=now)["ongoing"],
        },
    )


def incidents(request):
    now = timezone.now()
    return render(
        request, "availability/incidents.html", {"now": now, **selectors.incidents_overview(now=now)}
    )


def incident_detail(request, pk: int):
    incident = get_object_or_404(Incident.objects.prefetch_related("endpoints"), pk=pk)
    return render(request, "availability/incident_detail.html", {"incident": incident, "now": timezone.now()})


def rate_limits_help(request):
    limits = [
        ("GET /v2/privileges", settings.RATELIMIT_PRIVILEGES_PER_IP, settings.RATELIMIT_PRIVILEGES_PER_TOKEN),
        ("GET /api/watchdoge/stats/provider_availabilities", settings.RATELIMIT_STATS_PER_IP, None),
        ("GET /api/watchdoge/dashboard/current_status", settings.RATELIMIT_STATUS_PER_IP, None),
        ("GET /api/incidents", settings.RATELIMIT_INCIDENTS_PER_IP, None),
        ("POST /api/watchdoge/calls", settings.RATELIMIT_INGEST_PER_IP, None),
    ]
    return render(request, "availability/rate_limits.html", {"limits": limits})

"""GET /metrics for operators, in the Prometheus text format (prometheus-client).

Who may scrape: a client IP (tokenmgr.client_ip, so X-Forwarded-For counts only from TRUSTED_PROXIES) in
METRICS_ALLOWED_IPS, or a request with `Authorization: Bearer <METRICS_TOKEN>` (compared in constant time; an empty
METRICS_TOKEN accepts no bearer). Anyone else gets the site's ordinary 404, as for a page that does not exist.

What is exported:

- per process, summed over every gunicorn worker: HTTP requests and their latency by URL route *pattern* (never the
  raw path: one series per route, whatever the URLs asked), method and status class; requests refused by a rate
  limit, by limit name (tokenmgr.ratelimit, and django-axes' password lock-out); secrets reported exposed, by
  outcome and signature;
- computed at scrape time from the database, by ServiceCollector, in a handful of aggregate queries: tokens by
  status, reminders by state and the age of the oldest one not sent yet, the last reminder sweep's age and duration,
  webhook deliveries by state.

Several processes: with PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it), prometheus-client's multiprocess
mode keeps each process's counters in files of that directory and a scrape, answered by whichever worker, adds them
all up. ServiceCollector is registered only on the registry built for a scrape, so the database is read once per
scrape, never once per process.
"""

import hmac
import logging
import os
import time

from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, exposition, multiprocess
from prometheus_client.core import GaugeMetricFamily

from .client_ip import address_in, client_ip
from .security import bearer_token

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------------
# Instruments of this process (summed over processes in multiprocess mode)
# ---------------------------------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "tokenmgr_http_requests",
    "HTTP requests answered, by URL route pattern, method and status class.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "tokenmgr_http_request_duration_seconds",
    "Time to build the response (every middleware included), by URL route pattern and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RATE_LIMITED = Counter(
    "tokenmgr_ratelimit_exceeded",
    "Requests over a rate limit (answered 429), by limit name; login-lockout is django-axes' password lock-out.",
    ["limit"],
)
EXPOSURE_REPORTS = Counter(
    "tokenmgr_exposed_token_reports",
    "Secrets reported on POST /api/exposed_tokens, by outcome (matched, unmatched, invalid) and signature.",
    ["outcome", "signed"],
)

# Label values: a bounded set, whatever clients send.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"  # no URL pattern: a 404, or a response given by a middleware before routing
STATIC_ROUTE = "<static>"  # files served by whitenoise
AXES_LOCKOUT = "login-lockout"


def count_rate_limited(limit: str) -> None:
    """One request over the limit named `limit` (a rate-limit scope such as `privileges-ip`)."""
    RATE_LIMITED.labels(limit).inc()


def count_exposure_report(outcome: str, *, signed: bool) -> None:
    """One reported secret: `outcome` matched / unmatched / invalid, from a signed report or not."""
    EXPOSURE_REPORTS.labels(str(outcome), "yes" if signed else "no").inc()


class RequestMetricsMiddleware:
    """Counts every response and its latency by route pattern (first in MIDDLEWARE: the whole stack is timed)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._series: dict[tuple[str, str, str], tuple] = {}  # labels -> (counter, histogram) children

    def __call__(self, request):
        start = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - start
        match = request.resolver_match
        if match is not None:
            route = match.route
        elif request.path_info.startswith(settings.STATIC_URL):
            route = STATIC_ROUTE
        else:
            route = UNMATCHED_ROUTE
        method = request.method if request.method in METHODS else "other"
        key = (route, method, f"{response.status_code // 100}xx")
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (HTTP_REQUESTS.labels(*key), HTTP_LATENCY.labels(route, method))
        series[0].inc()
        series[1].observe(elapsed)
        return response


# ---------------------------------------------------------------------------------------------------------------
# Figures read from the database at scrape time
# ---------------------------------------------------------------------------------------------------------------
def _by_label(name: str, documentation: str, label: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family


class ServiceCollector:
    """The service's own state, from a few aggregate queries per scrape (one per table, the sweep by its index)."""

    def collect(self):
        from notifications import selectors as reminders
        from notifications.selectors import webhook_delivery_counts_by_status
        from tokens.selectors import token_counts_by_status

        now = timezone.now()
        try:
            tokens = token_counts_by_status(now)
            reminder_counts = reminders.reminder_counts_by_status()
            oldest_unsent = reminders.oldest_unsent_reminder_at()
            sweep = reminders.last_sweep()
            webhooks = webhook_delivery_counts_by_status()
        except DatabaseError as error:
            logger.warning("metrics: database unavailable: %s", error.__class__.__name__)
            yield GaugeMetricFamily(
                "tokenmgr_database_up", "Whether the database answered this scrape's queries.", value=0
            )
            return
        yield GaugeMetricFamily(
            "tokenmgr_database_up", "Whether the database answered this scrape's queries.", value=1
        )
        yield _by_label("tokenmgr_tokens", "Tokens by status.", "status", tokens)
        yield _by_label(
            "tokenmgr_reminders",
            "Renewal reminders by state (pending and sending: not sent yet).",
            "status",
            reminder_counts,
        )
        yield GaugeMetricFamily(
            "tokenmgr_reminder_oldest_unsent_age_seconds",
            "Age of the oldest reminder not sent yet (pending or sending), 0 when there is none.",
            value=(now - oldest_unsent).total_seconds() if oldest_unsent else 0,
        )
        yield GaugeMetricFamily(
            "tokenmgr_reminder_sweep_age_seconds",
            "Time since the last reminder sweep completed (+Inf if none ever did).",
            value=(now - sweep.finished_at).total_seconds() if sweep else float("inf"),
        )
        if sweep is not None:
            yield GaugeMetricFamily(
                "tokenmgr_reminder_sweep_duration_seconds",
                "Duration of the last completed reminder sweep.",
                value=(sweep.finished_at - sweep.started_at).total_seconds(),
            )
            yield GaugeMetricFamily(
                "tokenmgr_reminder_sweep_queued",
                "Reminders queued by the last completed sweep.",
                value=sweep.queued,
            )
        yield _by_label(
            "tokenmgr_webhook_deliveries",
            "Webhook deliveries (one event for one endpoint) by state; failed: given up after every attempt.",
            "status",
            webhooks,
        )


class _ThisProcess:
    """This process's instruments (and prometheus-client's process and platform figures), when there is one."""

    def collect(self):
        return REGISTRY.collect()


def scrape_registry() -> CollectorRegistry:
    """What one scrape exports: every process's instruments (or this process's alone), and the service's state."""
    registry = CollectorRegistry()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_ThisProcess())
    registry.register(ServiceCollector())
    return registry


# ---------------------------------------------------------------------------------------------------------------
# The view
# ---------------------------------------------------------------------------------------------------------------
def scrape_allowed(request) -> bool:
    """From an address of METRICS_ALLOWED_IPS, or with the bearer METRICS_TOKEN (empty: no bearer accepted)."""
    if settings.METRICS_ALLOWED_IPS and address_in(client_ip(request), settings.METRICS_ALLOWED_IPS):
        return True
    expected = settings.METRICS_TOKEN
    offered = bearer_token(request)
    return bool(expected and offered) and hmac.compare_digest(offered.encode(), expected.encode())


@never_cache
def metrics(request):
    if not scrape_allowed(request):
        raise Http404
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    encoder, content_type = exposition.choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(scrape_registry()), content_type=content_type)

"""GET /metrics (tokenmgr/metrics.py): who may scrape it, its format, the service's figures, the request and
rate-limit counters."""

import datetime as dt
import logging
import re

import pytest
from django.db import OperationalError
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from notifications.models import (
    Reminder,
    ReminderMessage,
    ReminderStatus,
    SweepRun,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from tests.factories import ClientFactory, UserFactory, issue_token
from tokenmgr import metrics
from tokenmgr.client_ip import parse_trusted_proxies
from tokens.models import Token

TOKEN = "metrics-scraper-secret-0123456789"
STATUS_URL = "/api/watchdoge/dashboard/current_status"


@pytest.fixture
def allow(settings):
    """Set who may scrape: allow(ips="10.0.0.0/8", token="...", proxies="...")."""

    def configure(*, ips: str = "", token: str = "", proxies: str = "") -> None:
        settings.METRICS_ALLOWED_IPS = parse_trusted_proxies(ips)
        settings.METRICS_TOKEN = token
        settings.TRUSTED_PROXIES = parse_trusted_proxies(proxies)

    configure()
    return configure


def _get(remote_addr: str = "127.0.0.1", **headers):
    return Client(REMOTE_ADDR=remote_addr).get("/metrics", headers=headers)


def _samples(body: bytes) -> dict[tuple[str, tuple], float]:
    """Every sample of a text exposition, keyed by (name, sorted labels); the parser raises on a malformed one."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ---------------------------------------------------------------------------------------------------------------
# Access
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_nobody_by_default(allow):
    assert _get().status_code == 404
    assert _get(Authorization="Bearer ").status_code == 404  # an empty METRICS_TOKEN accepts no bearer


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("ips", "remote_addr", "expected"),
    [
        ("127.0.0.1", "127.0.0.1", 200),
        ("192.0.2.7, 127.0.0.1", "127.0.0.1", 200),
        ("10.0.0.0/8", "10.20.30.40", 200),
        ("10.0.0.0/8", "11.0.0.1", 404),
        ("2001:db8::/32", "2001:db8::5", 200),
        ("2001:db8::/32", "2001:db9::5", 404),
        ("10.0.0.0/8", "::ffff:10.0.0.9", 200),
    ],
)
def test_allowed_addresses_and_ranges(allow, ips, remote_addr, expected):
    allow(ips=ips)
    assert _get(remote_addr).status_code == expected


@pytest.mark.django_db
def test_bearer_token(allow):
    allow(token=TOKEN)
    assert _get("203.0.113.9", Authorization=f"Bearer {TOKEN}").status_code == 200
    assert _get("203.0.113.9", Authorization=f"bearer {TOKEN}").status_code == 200
    assert _get("203.0.113.9", Authorization=f"Bearer {TOKEN}x").status_code == 404
    assert _get("203.0.113.9", Authorization=f"Bearer {TOKEN[:-1]}").status_code == 404
    assert _get("203.0.113.9", Authorization=f"Basic {TOKEN}").status_code == 404
    assert _get("203.0.113.9").status_code == 404


@pytest.mark.django_db
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(allow):
    allow(ips="10.0.0.0/8")
    # No trusted proxy: the header is the client's own claim.
    assert _get("203.0.113.9", **{"X-Forwarded-For": "10.0.0.1"}).status_code == 404
    # Behind a trusted proxy, the client is the address the proxy appended; the proxy's own address grants nothing.
    allow(ips="10.0.0.0/8", proxies="192.0.2.1")
    assert _get("192.0.2.1", **{"X-Forwarded-For": "10.0.0.1"}).status_code == 200
    assert _get("192.0.2.1", **{"X-Forwarded-For": "10.0.0.1, 203.0.113.9"}).status_code == 404
    allow(ips="192.0.2.1", proxies="192.0.2.1")
    assert _get("192.0.2.1", **{"X-Forwarded-For": "203.0.113.9"}).status_code == 404


def _page_shape(body: bytes) -> bytes:
    return re.sub(rb'name="(csrfmiddlewaretoken|next)" value="[^"]*"', b"", body)


@pytest.mark.django_db
def test_refusal_is_the_ordinary_404_and_other_methods(allow):
    allow(token=TOKEN)
    refused = Client().post("/metrics")
    assert refused.status_code == 404
    # indistinguishable from a missing page (whose language form carries a fresh CSRF token and the page's path)
    assert _page_shape(Client().get("/no-such-page").content) == _page_shape(_get().content)
    assert Client().post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


@pytest.mark.django_db
def test_plain_text_no_csp_not_cached(allow):
    allow(ips="127.0.0.1")
    response = _get()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "Content-Security-Policy" not in response
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_bearer_never_logged(allow, caplog):
    allow(token=TOKEN)
    with caplog.at_level(logging.DEBUG):
        _get("203.0.113.9", Authorization=f"Bearer {TOKEN}")
        _get("203.0.113.9", Authorization=f"Bearer {TOKEN}-wrong")  # logged by django.request as a 404
    assert caplog.records
    assert not [r for r in caplog.records if TOKEN in r.getMessage()]


# ---------------------------------------------------------------------------------------------------------------
# Contents
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_format_parses_and_names_every_family(allow):
    allow(ips="127.0.0.1")
    _get()  # at least one request counted
    body = _get().content
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {
        "tokenmgr_http_requests",
        "tokenmgr_http_request_duration_seconds",
        "tokenmgr_database_up",
        "tokenmgr_tokens",
        "tokenmgr_reminders",
        "tokenmgr_reminder_oldest_unsent_age_seconds",
        "tokenmgr_reminder_sweep_age_seconds",
        "tokenmgr_webhook_deliveries",
    } <= names


@pytest.mark.django_db
def test_service_figures_match_the_database(allow):
    allow(ips="127.0.0.1")
    now = timezone.now()
    active = [issue_token().token for _ in range(3)]
    expiring = [issue_token().token for _ in range(2)]
    Token.objects.filter(pk__in=[t.pk for t in expiring]).update(expires_at=now + dt.timedelta(days=5))
    expired = issue_token().token
    Token.objects.filter(pk=expired.pk).update(expires_at=now - dt.timedelta(days=1))
    revoked = issue_token().token
    Token.objects.filter(pk=revoked.pk).update(revoked_at=now)
    superseded = issue_token().token
    Token.objects.filter(pk=superseded.pk).update(renewed_by=active[0])

    states = [ReminderStatus.PENDING] * 2 + [ReminderStatus.SENDING] + [ReminderStatus.SENT] * 4
    states += [ReminderStatus.FAILED] * 3
    reminder = Reminder.objects.create(
        token=active[1], threshold=30, expires_at=active[1].expires_at, route="api_gouv"
    )
    for i, state in enumerate(states):  # the outbox: one message per (reminder, recipient)
        ReminderMessage.objects.create(reminder=reminder, email=f"contact{i}@example.org", status=state)
    queued_at = now - dt.timedelta(hours=2)
    ReminderMessage.objects.filter(status=ReminderStatus.SENDING).update(created_at=queued_at)
    ReminderMessage.objects.filter(status=ReminderStatus.FAILED).update(created_at=now - dt.timedelta(days=9))

    SweepRun.objects.create(
        day=now.date(),
        started_at=now - dt.timedelta(days=3, seconds=42),
        finished_at=now - dt.timedelta(days=3),
    )
    SweepRun.objects.create(
        day=now.date(),
        started_at=now - dt.timedelta(hours=5, seconds=7.5),
        finished_at=now - dt.timedelta(hours=5),
        queued=12,
    )

    owner = ClientFactory()
    for state, how_many in [("delivered", 3), ("failed", 2), ("pending", 1)]:
        for _ in range(how_many):
            event = WebhookEvent.objects.create(client=owner, type="ping")
            endpoint = WebhookEndpoint.objects.create(
                client=owner, url="https://hooks.example.fr/", secret="s"
            )
            WebhookDelivery.objects.create(event=event, endpoint=endpoint, url=endpoint.url, status=state)

    samples = _samples(_get().content)

    def gauge(name, status):
        return samples[(name, (("status", status),))]

    assert {
        s: gauge("tokenmgr_tokens", s) for s in ("active", "expiring", "expired", "revoked", "superseded")
    } == {
        "active": 3,
        "expiring": 2,
        "expired": 1,
        "revoked": 1,
        "superseded": 1,
    }
    assert {s: gauge("tokenmgr_reminders", s) for s in ReminderStatus.values} == {
        "pending": 2,
        "sending": 1,
        "sent": 4,
        "failed": 3,
        "cancelled": 0,
    }
    # The oldest reminder not sent yet is the `sending` one (the failed ones are older but settled).
    assert 2 * 3600 <= samples[("tokenmgr_reminder_oldest_unsent_age_seconds", ())] < 2 * 3600 + 60
    assert 5 * 3600 <= samples[("tokenmgr_reminder_sweep_age_seconds", ())] < 5 * 3600 + 60
    assert samples[("tokenmgr_reminder_sweep_duration_seconds", ())] == pytest.approx(7.5)
    assert samples[("tokenmgr_reminder_sweep_queued", ())] == 12
    assert {s: gauge("tokenmgr_webhook_deliveries", s) for s in WebhookDelivery.Status.values} == {
        "pending": 1,
        "sending": 0,
        "delivered": 3,
        "failed": 2,
    }
    assert samples[("tokenmgr_database_up", ())] == 1


@pytest.mark.django_db
def test_empty_database_sweep_never_ran(allow, django_assert_max_num_queries):
    allow(ips="127.0.0.1")
    with django_assert_max_num_queries(
        8
    ):  # session/auth middleware included; the collector itself: 5 queries
        samples = _samples(_get().content)
    assert samples[("tokenmgr_reminder_sweep_age_seconds", ())] == float("inf")
    assert samples[("tokenmgr_reminder_oldest_unsent_age_seconds", ())] == 0
    assert ("tokenmgr_reminder_sweep_duration_seconds", ()) not in samples
    assert samples[("tokenmgr_tokens", (("status", "active"),))] == 0


def test_collector_queries(django_assert_num_queries, db):
    with django_assert_num_queries(5):
        list(metrics.ServiceCollector().collect())


@pytest.mark.django_db
def test_database_down_still_answers_with_request_counters(allow, monkeypatch):
    allow(ips="127.0.0.1")

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("tokens.selectors.token_counts_by_status", down)
    response = _get()
    assert response.status_code == 200
    samples = _samples(response.content)
    assert samples[("tokenmgr_database_up", ())] == 0
    assert any(name == "tokenmgr_http_requests_total" for name, _ in samples)


# ---------------------------------------------------------------------------------------------------------------
# Counters of this process
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_requests_counted_per_route_pattern_method_and_status_class(allow):
    allow(ips="127.0.0.1")
    route = {"route": "incidents/<int:pk>/", "method": "GET", "status": "4xx"}
    before = _value("tokenmgr_http_requests_total", **route)
    before_latency = _value(
        "tokenmgr_http_request_duration_seconds_count", route="incidents/<int:pk>/", method="GET"
    )
    before_missing = _value("tokenmgr_http_requests_total", route="<unmatched>", method="GET", status="4xx")
    before_odd = _value("tokenmgr_http_requests_total", route="healthz", method="other", status="4xx")
    http = Client()
    for pk in (991, 992, 993):  # three URLs, one route
        assert http.get(f"/incidents/{pk}/").status_code == 404
    http.get("/no/such/page/")
    http.generic("PROPFIND", "/healthz")
    assert _value("tokenmgr_http_requests_total", **route) == before + 3
    assert (
        _value("tokenmgr_http_request_duration_seconds_count", route="incidents/<int:pk>/", method="GET")
        == before_latency + 3
    )
    assert (
        _value("tokenmgr_http_requests_total", route="<unmatched>", method="GET", status="4xx")
        == before_missing + 1
    )
    assert (
        _value("tokenmgr_http_requests_total", route="healthz", method="other", status="4xx")
        == before_odd + 1
    )

    samples = _samples(_get().content)  # and the same figures in a scrape
    assert samples[("tokenmgr_http_requests_total", tuple(sorted(route.items())))] == before + 3
    assert not [labels for name, labels in samples if "/incidents/991/" in str(labels)]  # never the raw path


@pytest.mark.django_db
def test_429s_counted_by_limit(allow, settings):
    settings.RATELIMIT_STATUS_PER_IP = 2
    before = _value("tokenmgr_ratelimit_exceeded_total", limit="status-ip")
    statuses = [Client(REMOTE_ADDR="198.51.100.4").get(STATUS_URL).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    assert _value("tokenmgr_ratelimit_exceeded_total", limit="status-ip") == before + 2
    allow(ips="127.0.0.1")
    samples = _samples(_get().content)
    assert samples[("tokenmgr_ratelimit_exceeded_total", (("limit", "status-ip"),))] == before + 2


@pytest.mark.django_db
def test_password_lockout_counted(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    UserFactory(email="ana@example.org")
    before = _value("tokenmgr_ratelimit_exceeded_total", limit=metrics.AXES_LOCKOUT)
    http = Client(REMOTE_ADDR="203.0.113.77")
    statuses = [
        http.post("/connexion/", {"username": "ana@example.org", "password": "faux"}).status_code
        for _ in range(settings.AXES_FAILURE_LIMIT + 1)
    ]
    assert statuses[-2:] == [429, 429]
    assert _value("tokenmgr_ratelimit_exceeded_total", limit=metrics.AXES_LOCKOUT) == before + 2


@pytest.mark.django_db
def test_readme_alerts_use_exported_series(allow):
    """The alert rules and the series table of the README name series a scrape really has."""
    from pathlib import Path

    from django.conf import settings

    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    section = readme.split("### Metrics (`/metrics`, Prometheus)", 1)[1].split("\n### ", 1)[0]
    named = set(re.findall(r"\b(tokenmgr_[a-z_]+[a-z])\b", section))
    assert {"tokenmgr_reminder_sweep_age_seconds", "tokenmgr_reminder_oldest_unsent_age_seconds"} <= named

    allow(ips="127.0.0.1")
    issue_token()
    SweepRun.objects.create(day=timezone.now().date(), started_at=timezone.now(), finished_at=timezone.now())
    Client().get("/healthz")
    body = _get().content.decode()
    exported = {name for name, _ in _samples(body.encode())}
    # A labelled counter that counted nothing yet is a family without samples: `<family>_total` once it counts.
    families = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(body)
    }
    assert named - exported - families == set()
    # The table's abbreviations `_duration_seconds`, `_queued` stand for these:
    assert {"tokenmgr_reminder_sweep_duration_seconds", "tokenmgr_reminder_sweep_queued"} <= exported


def test_gunicorn_hooks_empty_the_directory_at_start_and_drop_dead_workers_live_gauges(tmp_path, monkeypatch):
    import runpy
    from pathlib import Path

    from django.conf import settings

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    conf = runpy.run_path(str(Path(settings.BASE_DIR) / "gunicorn.conf.py"))
    conf["on_starting"](None)  # creates the directory
    stale = [tmp_path / "prom" / name for name in ("counter_41.db", "histogram_41.db", "gauge_livesum_41.db")]
    for path in stale:
        path.write_bytes(b"")
    (tmp_path / "prom" / "notes.txt").write_text("not ours")
    conf["child_exit"](None, type("Worker", (), {"pid": 41})())
    assert sorted(p.name for p in (tmp_path / "prom").iterdir()) == [
        "counter_41.db",
        "histogram_41.db",
        "notes.txt",
    ]
    conf["on_starting"](None)
    assert [p.name for p in (tmp_path / "prom").iterdir()] == ["notes.txt"]

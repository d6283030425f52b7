import datetime as dt
import json
import xml.etree.ElementTree as ET

import pytest
import time_machine
from django.contrib.auth.models import Permission

from availability.models import Incident
from tests.factories import ClientMembershipFactory, UserFactory, issue_token
from tokens.models import Endpoint

from .conftest import EP, STATS, line, paris

pytestmark = pytest.mark.django_db
NOW = paris(2026, 11, 27, 10, 15)
STATUS = "/api/watchdoge/dashboard/current_status"


# ---------------------------------------------------------------- rate limits
@pytest.mark.parametrize(
    ("url", "setting"),
    [
        (f"{STATS}?endpoint={EP}&period=1d", "RATELIMIT_STATS_PER_IP"),
        (STATUS, "RATELIMIT_STATUS_PER_IP"),
        ("/api/incidents", "RATELIMIT_INCIDENTS_PER_IP"),
    ],
)
@time_machine.travel(dt.datetime(2026, 3, 10, 9, 0, 5, tzinfo=dt.UTC), tick=False)
def test_rate_limit_headers_and_429(client, settings, url, setting):
    setattr(settings, setting, 3)
    responses = [client.get(url) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r["RateLimit-Remaining"] for r in responses] == ["2", "1", "0"]
    assert all(r["RateLimit-Limit"] == "3" and 1 <= int(r["RateLimit-Reset"]) <= 60 for r in responses)
    blocked = client.get(url)
    assert blocked.status_code == 429
    assert int(blocked["Retry-After"]) >= 1
    assert blocked["RateLimit-Remaining"] == "0"
    assert blocked.json()["errors"][0]["code"] == "rate_limited"
    # another client IP has its own counter
    assert client.get(url, REMOTE_ADDR="10.0.0.2").status_code == 200


@time_machine.travel(dt.datetime(2026, 3, 10, 9, 0, 5, tzinfo=dt.UTC), tick=False)
def test_errors_carry_rate_limit_headers(client):
    response = client.get(STATS, {"endpoint": "nope"})
    assert response.status_code == 422
    assert response["RateLimit-Limit"]


# ---------------------------------------------------------------- current status
def test_current_status(client, ingest, settings):
    other, third = "api/v2/exercices", "api/v2/associations"
    ingest(
        (paris(2026, 11, 27, 10, 14), 200, EP),
        (paris(2026, 11, 27, 10, 10), 502, EP),  # 1 of 2 unavailable: DOWN (>= 50 %)
        (paris(2026, 11, 27, 10, 14), 200, other),
        (paris(2026, 11, 27, 10, 1), 200, other),
        (paris(2026, 11, 27, 10, 5), 504, other),  # 1 of 3: UP
        (paris(2026, 11, 27, 9, 59), 500, third),  # older than 15 minutes: UNKNOWN
    )
    with time_machine.travel(NOW, tick=False):
        body = client.get(STATUS).json()
    by_path = {e["endpoint"]: e for e in body["endpoints"]}
    assert len(by_path) == 25
    assert by_path[EP]["status"] == "DOWN"
    assert by_path[other]["status"] == "UP"
    assert by_path[third]["status"] == "UNKNOWN"
    assert by_path[third]["last_call_at"] == "2026-11-27T08:59:00+00:00"
    assert by_path["api/v2/cotisations_msa"] == {
        **by_path["api/v2/cotisations_msa"],
        "status": "UNKNOWN",
        "last_call_at": None,
    }
    assert body["window_minutes"] == 15
    settings.AVAILABILITY_DOWN_RATIO = 0.3
    with time_machine.travel(NOW, tick=False):
        by_path = {e["endpoint"]: e for e in client.get(STATUS).json()["endpoints"]}
    assert by_path[other]["status"] == "DOWN"


def test_real_time_page(client, ingest):
    ingest((paris(2026, 11, 27, 10, 14), 503, EP))
    with time_machine.travel(NOW, tick=False):
        response = client.get("/real_time/")
    assert response.status_code == 200
    html = response.content.decode()
    # Reloaded by a script the reader can pause, never by <meta refresh> (which nobody can stop).
    assert 'http-equiv="refresh"' not in html
    assert 'data-auto-refresh="60"' in html and 'id="auto-refresh-toggle"' in html
    assert f'data-endpoint="{EP}" data-status="DOWN"' in html
    assert html.count("data-status=") == 25
    assert "fr-badge--error" in html


# ---------------------------------------------------------------- incidents
@pytest.fixture
def incidents():
    ep = Endpoint.objects.get(path=EP)
    ongoing = Incident.objects.create(
        title="Panne INSEE",
        starts_at=NOW - dt.timedelta(hours=1),
        description="**Lenteurs** <script>alert(1)</script> [lien](javascript:alert(2))",
    )
    ongoing.endpoints.add(ep)
    planned = Incident.objects.create(
        title="Maintenance DGFIP",
        planned=True,
        starts_at=NOW + dt.timedelta(days=2),
        ends_at=NOW + dt.timedelta(days=2, hours=3),
    )
    past = Incident.objects.create(
        title="Incident ancien", starts_at=NOW - dt.timedelta(days=10), ends_at=NOW - dt.timedelta(days=9)
    )
    return ongoing, planned, past


def test_incidents_page_sections_and_safe_markdown(client, incidents):
    with time_machine.travel(NOW, tick=False):
        html = client.get("/incidents/").content.decode()
    ongoing_at, upcoming_at, past_at = (
        html.index('id="ongoing"'),
        html.index('id="upcoming"'),
        html.index('id="past"'),
    )
    assert ongoing_at < html.index("Panne INSEE") < upcoming_at < html.index("Maintenance DGFIP") < past_at
    assert html.index("Incident ancien") > past_at
    assert "<strong>Lenteurs</strong>" in html
    assert "alert(1)" not in html
    assert "javascript:" not in html


def test_incident_detail_and_404(client, incidents):
    assert client.get(f"/incidents/{incidents[0].pk}/").status_code == 200
    assert client.get("/incidents/999999/").status_code == 404


def test_incidents_json(client, incidents):
    with time_machine.travel(NOW, tick=False):
        body = client.get("/api/incidents").json()
    states = [(i["title"], i["state"], i["planned"]) for i in body["incidents"]]
    assert states == [
        ("Panne INSEE", "ongoing", False),
        ("Maintenance DGFIP", "upcoming", True),
        ("Incident ancien", "past", False),
    ]
    assert body["incidents"][0]["endpoints"] == [EP]
    assert body["incidents"][0]["ends_at"] is None
    assert "<script>" not in body["incidents"][0]["description_html"]


def test_incidents_feeds(client, incidents):
    rss = client.get("/incidents/feed/rss/")
    assert rss.status_code == 200 and "rss" in rss["Content-Type"]
    titles = [t.text for t in ET.fromstring(rss.content).iter("title")]
    assert "Panne INSEE" in titles and "[Maintenance] Maintenance DGFIP" in titles
    atom = client.get("/incidents/feed/atom/")
    assert atom.status_code == 200 and "atom" in atom["Content-Type"]
    ns = {"a": "http://www.w3.org/2005/Atom"}
    entries = ET.fromstring(atom.content).findall("a:entry", ns)
    assert len(entries) == 3
    assert all(e.find("a:link", ns).get("href").startswith("http") for e in entries)


def test_admin_crud(client, incidents):
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    assert client.get("/admin/availability/incident/").status_code == 200
    assert client.get(f"/admin/availability/incident/{incidents[0].pk}/change/").status_code == 200
    response = client.post(
        "/admin/availability/incident/add/",
        {
            "title": "Nouvelle panne",
            "planned": "",
            "endpoints": [Endpoint.objects.get(path=EP).pk],
            "starts_at_0": "2026-11-27",
            "starts_at_1": "09:00:00",
            "ends_at_0": "",
            "ends_at_1": "",
            "description": "Texte",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert Incident.objects.get(title="Nouvelle panne").ends_at is None


def test_help_page(client):
    html = client.get("/aide/limites/").content.decode()
    for code in ("200", "206", "400", "401", "403", "404", "422", "429", "451", "500", "502", "503", "504"):
        assert f"<code>{code}</code>" in html
    assert "Retry-After" in html and "RateLimit-Remaining" in html


# ---------------------------------------------------------------- batch ingest endpoint
CALLS = "/api/watchdoge/calls"


@pytest.fixture
def shipper_secret():
    issued = issue_token()
    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(codename="ingest_calls"))
    ClientMembershipFactory(client=issued.token.client, user=user)
    return issued.secret


def post_calls(client, body: str, secret: str | None, **headers):
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return client.generic("POST", CALLS, body.encode(), content_type="application/x-ndjson", headers=headers)


def test_calls_requires_a_token(client):
    response = post_calls(client, line(NOW), None)
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "missing_token"
    assert post_calls(client, line(NOW), "tkm_unknown").status_code == 401


def test_calls_requires_the_permission(client):
    issued = issue_token()
    response = post_calls(client, line(NOW), issued.secret)
    assert response.status_code == 403
    assert set(response.json()["errors"][0]) == {"code", "title", "detail"}


def test_calls_batch_with_per_line_errors(client, shipper_secret):
    body = "\n".join([line(NOW), "oops", line(NOW, 502), line(NOW, endpoint="api/v2/nope")])
    response = post_calls(client, body, shipper_secret)
    assert response.status_code == 200
    assert response.json() == {
        "accepted": 2,
        "rejected": 2,
        "errors": [
            {"line": 2, "detail": "JSON invalide"},
            {"line": 4, "detail": "endpoint inconnu : 'api/v2/nope'"},
        ],
        "errors_truncated": False,
        "replayed": False,
    }
    assert response["RateLimit-Limit"]
    with time_machine.travel(NOW, tick=False):
        stats = client.get(STATS, {"endpoint": EP, "period": "1h"}).json()
    assert stats["days_availability"]["2026-11-27"]["total"] == 2


def test_calls_idempotency_key(client, shipper_secret):
    body = "\n".join(line(NOW) for _ in range(3))
    first = post_calls(client, body, shipper_secret, **{"Idempotency-Key": "batch-1"})
    again = post_calls(client, body, shipper_secret, **{"Idempotency-Key": "batch-1"})
    assert first.json()["accepted"] == again.json()["accepted"] == 3
    assert again.json()["replayed"] is True
    with time_machine.travel(NOW, tick=False):
        stats = client.get(STATS, {"endpoint": EP, "period": "1h"}).json()
    assert stats["days_availability"]["2026-11-27"]["total"] == 3
    assert json.loads(post_calls(client, body, shipper_secret).content)["replayed"] is False

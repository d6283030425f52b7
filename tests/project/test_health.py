import datetime as dt
import sys
import types

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.fixture
def last_sweep(monkeypatch):
    """Stand-in for notifications.selectors.last_sweep_at, set per test."""
    state = {"at": timezone.now()}
    module = types.ModuleType("notifications.selectors")
    module.last_sweep_at = lambda: state["at"]
    monkeypatch.setitem(sys.modules, "notifications.selectors", module)
    return state


def test_healthy(client, last_sweep):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "broker", "reminder_sweep"}


def test_stale_sweep_is_unhealthy(client, last_sweep):
    last_sweep["at"] = timezone.now() - dt.timedelta(hours=26, minutes=1)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["reminder_sweep"]["ok"] is False


def test_never_swept_is_unhealthy(client, last_sweep):
    last_sweep["at"] = None
    assert client.get("/healthz").status_code == 503


def test_database_down_is_unhealthy(client, last_sweep, monkeypatch):
    from tokenmgr import health

    def down():
        raise ConnectionError("refused")

    monkeypatch.setattr(health, "check_database", down)
    down.__name__ = "check_database"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {
        "ok": False,
        "ms": response.json()["checks"]["database"]["ms"],
        "error": "ConnectionError",
    }


def test_ready(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"

import datetime as dt
import types

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_health_state():
    from tokenmgr import health

    health.cache_clear()
    yield
    health.cache_clear()


@pytest.fixture
def last_sweep(monkeypatch):
    """Stand-in for the latest sweep's time, set per test."""
    from tokenmgr import health

    state = {"at": timezone.now()}
    monkeypatch.setattr(health, "last_sweep_at", lambda: state["at"])
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


# ---------------------------------------------------------------- cheap under load
@pytest.fixture
def clock(monkeypatch):
    """The monotonic clock the health answers are cached against, moved by hand."""
    from tokenmgr import health

    now = [1000.0]
    monkeypatch.setattr(health, "_clock", lambda: now[0])
    return now


@pytest.fixture
def broker_spy(monkeypatch):
    """Counts broker connections handed out and actually established, and pings on them."""
    import kombu

    from tokenmgr.celery import app

    counts = {"connections": 0, "established": 0}
    connection_for_write = app.connection_for_write
    establish = kombu.Connection._establish_connection

    def counting_connection(*args, **kwargs):
        counts["connections"] += 1
        return connection_for_write(*args, **kwargs)

    def counting_establish(self, *args, **kwargs):
        counts["established"] += 1
        return establish(self, *args, **kwargs)

    monkeypatch.setattr(app, "connection_for_write", counting_connection)
    monkeypatch.setattr(kombu.Connection, "_establish_connection", counting_establish)
    return counts


def test_healthz_calls_within_the_window_make_one_round_of_checks(
    client, last_sweep, clock, broker_spy, settings, monkeypatch
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tokenmgr import health

    settings.HEALTH_CACHE_SECONDS = 5
    rounds = []
    sweep = health.check_sweep

    def counting_sweep():
        rounds.append(1)
        return sweep()

    counting_sweep.__name__ = "check_sweep"
    monkeypatch.setattr(health, "check_sweep", counting_sweep)
    first = client.get("/healthz")
    assert first.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        answers = [client.get("/healthz") for _ in range(50)]
        clock[0] += 4.9
        answers += [client.get("/healthz") for _ in range(50)]
    assert len(queries) == 0  # no SELECT 1, nothing
    assert rounds == [1]
    assert {(a.status_code, a.content) for a in answers} == {(first.status_code, first.content)}
    assert broker_spy == {"connections": 1, "established": 1}
    # After the window: a new round, over the same broker connection.
    clock[0] += 0.2
    with CaptureQueriesContext(connection) as queries:
        again = client.get("/healthz")
    assert again.status_code == 200 and again.json()["status"] == "ok"
    assert len(queries) == 1 and "SELECT 1" in queries[0]["sql"]
    assert rounds == [1, 1]
    assert broker_spy == {"connections": 1, "established": 1}


def test_a_failing_dependency_shows_after_the_window(client, last_sweep, clock, settings, monkeypatch):
    from tokenmgr import health

    settings.HEALTH_CACHE_SECONDS = 5
    assert client.get("/healthz").status_code == 200

    def down():
        raise ConnectionError("refused")

    down.__name__ = "check_database"
    working = health.check_database
    monkeypatch.setattr(health, "check_database", down)
    clock[0] += 4
    assert client.get("/healthz").status_code == 200  # still the cached round
    clock[0] += 1
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["error"] == "ConnectionError"
    # And the failure is cached for the window too, then cleared once the dependency is back.
    monkeypatch.setattr(health, "check_database", working)
    assert client.get("/healthz").status_code == 503
    clock[0] += 5
    assert client.get("/healthz").status_code == 200


def test_a_broken_broker_connection_is_replaced(client, last_sweep, clock, broker_spy, settings):
    from tokenmgr import health

    settings.HEALTH_CACHE_SECONDS = 5
    assert client.get("/healthz").json()["checks"]["broker"]["ok"] is True
    conn = health._state["broker"]

    def broken(*args, **kwargs):
        raise ConnectionError("broker gone")

    conn.ensure_connection = broken
    clock[0] += 5
    body = client.get("/healthz").json()
    assert body["checks"]["broker"] == {**body["checks"]["broker"], "ok": False, "error": "ConnectionError"}
    assert health._state["broker"] is None
    clock[0] += 5
    assert client.get("/healthz").json()["checks"]["broker"]["ok"] is True
    assert broker_spy["connections"] == 2


def test_readyz_builds_the_migration_graph_until_all_are_applied(client, clock, settings, monkeypatch):
    from tokenmgr import health

    settings.HEALTH_CACHE_SECONDS = 5
    built = []
    real = health.MigrationExecutor

    def counting(*args, **kwargs):
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(health, "MigrationExecutor", counting)
    answers = [client.get("/readyz") for _ in range(20)]
    assert {(a.status_code, a.content) for a in answers} == {(200, b'{"status": "ready", "debug": false}')}
    assert built == [1]
    clock[0] += 60
    assert client.get("/readyz").json() == {"status": "ready", "debug": False}
    assert built == [1]  # applied once: never built again in this process


def test_readyz_pending_migrations_are_rechecked(client, clock, settings, monkeypatch):
    from tokenmgr import health

    settings.HEALTH_CACHE_SECONDS = 5
    pending = [3]

    class Executor:
        def __init__(self, connection):
            self.loader = types.SimpleNamespace(graph=types.SimpleNamespace(leaf_nodes=lambda: []))

        def migration_plan(self, targets):
            return [object()] * pending[0]

    monkeypatch.setattr(health, "MigrationExecutor", Executor)
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (503, {"status": "not_ready", "pending_migrations": 3})
    pending[0] = 0
    assert client.get("/readyz").status_code == 503  # cached
    clock[0] += 5
    assert client.get("/readyz").json() == {"status": "ready", "debug": False}


def test_readyz_database_down(client, clock, monkeypatch):
    from tokenmgr import health

    def down():
        raise ConnectionError("refused")

    monkeypatch.setattr(health, "check_database", down)
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (
        503,
        {"status": "not_ready", "error": "ConnectionError"},
    )

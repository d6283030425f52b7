"""/healthz (liveness of every dependency, and the reminder sweep's freshness) and /readyz (ready to serve).

Both are cheap under load: each process answers from its last round of checks for HEALTH_CACHE_SECONDS (one
round at a time, concurrent callers wait for it), the broker is checked over one connection kept by the process,
and "every migration is applied" is computed from the migration graph only until it is true once.
"""

import datetime as dt
import logging
import threading
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from notifications.selectors import last_sweep_at

logger = logging.getLogger(__name__)

SWEEP_MAX_AGE = dt.timedelta(hours=26)

_clock = time.monotonic
_lock = threading.Lock()
_answers: dict[str, tuple[float, tuple[dict, int]]] = {}  # view -> (monotonic time, (body, status))
_state = {"migrations_applied": False, "broker": None}


def cache_clear() -> None:
    """Forget the cached answers, the migration state and the broker connection (tests, after a fork)."""
    with _lock:
        _answers.clear()
        _state["migrations_applied"] = False
        _release_broker()


def _answer(name: str, compute) -> JsonResponse:
    """`compute()` -> (body, status), at most once per HEALTH_CACHE_SECONDS in this process."""
    ttl = settings.HEALTH_CACHE_SECONDS
    with _lock:
        cached = _answers.get(name)
        if cached is None or ttl <= 0 or _clock() - cached[0] >= ttl:
            cached = _answers[name] = (_clock(), compute())
    body, status = cached[1]
    return JsonResponse(body, status=status)


def _timed(check) -> dict:
    start = time.perf_counter()
    try:
        detail = check() or {}
        ok = detail.pop("ok", True)
    except Exception as exc:  # noqa: BLE001 - a health check reports failures, it never raises
        ok, detail = False, {"error": exc.__class__.__name__}
        logger.warning("health check %s failed: %r", check.__name__, exc)
    return {"ok": ok, "ms": round((time.perf_counter() - start) * 1000, 1), **detail}


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def check_cache() -> dict:
    key = "healthz:probe"
    cache.set(key, "1", 10)
    return {"ok": cache.get(key) == "1"}


def _release_broker() -> None:
    conn, _state["broker"] = _state["broker"], None
    if conn is not None:
        try:
            conn.release()
        except Exception:  # noqa: BLE001 - a broken connection is dropped either way
            logger.debug("broker connection release failed", exc_info=True)


def check_broker() -> dict:
    """One broker connection per process, opened on first use and reused; a round trip on it (PING on Redis)
    proves the broker answers. A failed check drops the connection: the next check opens a new one."""
    from tokenmgr.celery import app

    conn = _state["broker"]
    try:
        if conn is None:
            conn = _state["broker"] = app.connection_for_write()
        conn.ensure_connection(max_retries=1, timeout=2)
        client = getattr(conn.default_channel, "client", None)
        if callable(getattr(client, "ping", None)):
            client.ping()
    except Exception:
        _release_broker()
        raise
    return {"transport": app.conf.broker_url.split(":", 1)[0]}


def check_sweep() -> dict:
    last = last_sweep_at()
    if last is None:
        return {"ok": False, "last_success": None, "age_hours": None}
    age = timezone.now() - last
    return {
        "ok": age <= SWEEP_MAX_AGE,
        "last_success": last.isoformat(),
        "age_hours": round(age.total_seconds() / 3600, 2),
    }


def _health() -> tuple[dict, int]:
    checks = {
        "database": _timed(check_database),
        "cache": _timed(check_cache),
        "broker": _timed(check_broker),
        "reminder_sweep": _timed(check_sweep),
    }
    healthy = all(c["ok"] for c in checks.values())
    return {"status": "ok" if healthy else "unhealthy", "checks": checks}, 200 if healthy else 503


def pending_migrations() -> int:
    """How many migrations are not applied; once none is, the answer is kept for the life of the process (this
    code's migrations cannot become unapplied while it runs), so the graph is no longer built."""
    if _state["migrations_applied"]:
        return 0
    executor = MigrationExecutor(connection)
    pending = len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    _state["migrations_applied"] = pending == 0
    return pending


def _readiness() -> tuple[dict, int]:
    try:
        check_database()
        pending = pending_migrations()
    except Exception as exc:  # noqa: BLE001
        return {"status": "not_ready", "error": exc.__class__.__name__}, 503
    if pending:
        return {"status": "not_ready", "pending_migrations": pending}, 503
    return {"status": "ready", "debug": settings.DEBUG}, 200


@never_cache
@require_GET
def healthz(request):
    return _answer("healthz", _health)


@never_cache
@require_GET
def readyz(request):
    """Ready when the database answers and every migration is applied (the e2e test and load balancers wait on it)."""
    return _answer("readyz", _readiness)

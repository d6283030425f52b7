"""/healthz (liveness of every dependency, and the reminder sweep's freshness) and /readyz (ready to serve)."""

import datetime as dt
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

SWEEP_MAX_AGE = dt.timedelta(hours=26)


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


def check_broker() -> dict:
    from tokenmgr.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {"transport": app.conf.broker_url.split(":", 1)[0]}


def check_sweep() -> dict:
    try:
        from notifications.selectors import last_sweep_at
    except ImportError:
        return {"ok": True, "last_success": None, "note": "reminders not installed"}
    last = last_sweep_at()
    if last is None:
        return {"ok": False, "last_success": None, "age_hours": None}
    age = timezone.now() - last
    return {
        "ok": age <= SWEEP_MAX_AGE,
        "last_success": last.isoformat(),
        "age_hours": round(age.total_seconds() / 3600, 2),
    }


@never_cache
@require_GET
def healthz(request):
    checks = {
        "database": _timed(check_database),
        "cache": _timed(check_cache),
        "broker": _timed(check_broker),
        "reminder_sweep": _timed(check_sweep),
    }
    healthy = all(c["ok"] for c in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unhealthy", "checks": checks}, status=200 if healthy else 503
    )


@never_cache
@require_GET
def readyz(request):
    """Ready when the database answers and every migration is applied (the e2e test and load balancers wait on it)."""
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # noqa: BLE001
        return JsonResponse({"status": "not_ready", "error": exc.__class__.__name__}, status=503)
    if pending:
        return JsonResponse({"status": "not_ready", "pending_migrations": len(pending)}, status=503)
    return JsonResponse({"status": "ready", "debug": settings.DEBUG})

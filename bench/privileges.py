"""/v2/privileges under gunicorn (2 workers) with wrk on loopback, against a bare Django JsonResponse view (issue 7).

    python bench/run_all.py privileges       (DATABASE_URL on PostgreSQL, REDIS_URL: scripts/with_services.py)

Starts gunicorn with the production configuration (gunicorn.conf.py, DEBUG off, JSON logs, persistent database
connections, Redis cache for the rate-limit counters) and BENCH_VIEWS=1, which routes /bench/bare: a view that only
returns JsonResponse, behind the same middleware stack. wrk (Debian package) loads each URL in turn, alternating, for
BENCH_PRIVILEGES_SECONDS (default 10) each, twice; the best run of each counts. Rate limits are set high enough never
to answer 429 (a non-2xx answer fails the benchmark). Queries per request are counted in-process with
CaptureQueriesContext over 200 requests after a warm-up.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Row, django_setup, log, register, report  # noqa: E402

SECONDS = int(os.environ.get("BENCH_PRIVILEGES_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_PRIVILEGES_CONNECTIONS", "8"))
TARGET_RATIO = 0.7
BENCH_ENV = {
    "DEBUG": "0",
    "BENCH_VIEWS": "1",
    "LOG_FORMAT": "json",
    "CONN_MAX_AGE": "600",
    "RATELIMIT_PRIVILEGES_PER_IP": str(10**9),
    "RATELIMIT_PRIVILEGES_PER_TOKEN": str(10**9),
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_token() -> str:
    from tokens.models import Privilege
    from tokens.services import client_get_or_create, token_issue

    client = client_get_or_create(siret="13002526500013", name="DINUM")
    privileges = list(Privilege.objects.filter(code__in=["entreprises", "etablissements", "associations"]))
    return token_issue(client=client, privileges=privileges).secret


def queries_per_request(secret: str, n: int = 200) -> float:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    for _ in range(20):  # warm-up: the first request of a token may write last_used_at
        assert client.get("/v2/privileges", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        for _ in range(n):
            response = client.get("/v2/privileges", HTTP_AUTHORIZATION=f"Bearer {secret}")
            assert response.status_code == 200, response.content
    return len(queries.captured_queries) / n


def wrk(url: str, seconds: int, headers: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(requests/s, p99 ms, requests) of `url`; fails on any non-2xx answer or socket error."""
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors on {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    p99_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, p99_ms, requests


def server_statements() -> int:
    """Transactions PostgreSQL committed in this database so far (every autocommit statement is one)."""
    import psycopg
    from django.db import connection

    dsn = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in dsn.items() if k != "cursor_factory"}, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        return conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()[0]


def wait_http(url: str, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} never answered 200")


@register("privileges")
def run() -> list[Row]:
    if not shutil.which("wrk"):
        raise SystemExit("bench privileges: wrk not found (Debian package `wrk`)")
    os.environ.update(BENCH_ENV)
    django_setup()
    secret = make_token()
    queries = queries_per_request(secret)
    log(f"/v2/privileges: {queries:.2f} queries per request (in-process, after warm-up)")

    port = free_port()
    logdir = Path(tempfile.mkdtemp(prefix="bench-privileges-"))
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--workers", "2"]
    cmd += ["--bind", f"127.0.0.1:{port}"]
    with (logdir / "web.log").open("wb") as web_log:
        web = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), stdout=web_log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    targets = {
        "bare": (f"{base}/bench/bare", None),
        "privileges": (f"{base}/v2/privileges", {"Authorization": f"Bearer {secret}"}),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
    try:
        wait_http(f"{base}/bench/bare")
        for url, headers in targets.values():
            wrk(url, 2, headers)  # warm-up: connections, imports, caches of both workers
        # Server side, honestly: PostgreSQL's own count of statements while wrk runs (health-check pings included).
        time.sleep(1.5)  # idle backends flush their statistics within a second
        before = server_statements()
        url, headers = targets["privileges"]
        _, _, served = wrk(url, 3, headers)
        time.sleep(1.5)
        statements = (server_statements() - before - 1) / served  # minus this probe's own transaction
        log(f"/v2/privileges: {statements:.2f} PostgreSQL statements per request (pg_stat_database)")
        for _ in range(2):
            for name, (url, headers) in targets.items():
                results[name].append(wrk(url, SECONDS, headers)[:2])
                log(f"{name}: {results[name][-1][0]:,.0f} req/s, p99 {results[name][-1][1]:.2f} ms")
    finally:
        web.terminate()
        try:
            web.wait(15)
        except subprocess.TimeoutExpired:
            web.kill()
        shutil.rmtree(logdir, ignore_errors=True)
    bare_rps, bare_p99 = max(r[0] for r in results["bare"]), min(r[1] for r in results["bare"])
    rps, p99 = max(r[0] for r in results["privileges"]), min(r[1] for r in results["privileges"])
    return [
        Row(
            "/v2/privileges req/s (gunicorn 2 workers, wrk)",
            rps,
            baseline=bare_rps,
            target=TARGET_RATIO * bare_rps,
        ),
        Row("/v2/privileges p99", p99, baseline=bare_p99, unit="ms", higher_is_better=False),
        Row("/v2/privileges ORM queries per request", queries, target=1, higher_is_better=False),
        Row("/v2/privileges PostgreSQL statements per request", statements),
    ]


if __name__ == "__main__":
    report(run())

"""/v2/privileges under gunicorn (2 workers) with wrk on loopback, against a bare Django JsonResponse view.

    python bench/run_all.py privileges       (DATABASE_URL on PostgreSQL, REDIS_URL: scripts/with_services.py)

Starts gunicorn with the production configuration (gunicorn.conf.py, DEBUG off, JSON logs, persistent database
connections, Redis cache for the rate-limit counters) and BENCH_VIEWS=1, which routes /bench/bare: a view that only
returns JsonResponse, behind the same middleware stack. wrk (Debian package) loads each URL in turn, alternating, for
BENCH_PRIVILEGES_SECONDS (default 10) each, twice; the best run of each counts. Rate limits are set high enough never
to answer 429 (a non-2xx answer fails the benchmark). Queries per request are counted in-process with
CaptureQueriesContext over 200 requests after a warm-up.

Besides the target row (one token, default settings: token checks reused for TOKEN_CHECK_CACHE_SECONDS in each
process, rate limits pre-counted locally), two rows for information: 1,000 tokens in rotation (a wrk Lua script), and
the exact configuration (TOKEN_CHECK_CACHE_SECONDS=0, RATELIMIT_LOCAL_BATCH=0: one query and one Redis round trip per
request) against the bare view of its own server.
"""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Row, django_setup, free_port, log, register, report  # noqa: E402

SECONDS = int(os.environ.get("BENCH_PRIVILEGES_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_PRIVILEGES_CONNECTIONS", "8"))
TARGET_RATIO = 0.7
ROTATION_TOKENS = 1000
BENCH_ENV = {
    "DEBUG": "0",
    "BENCH_VIEWS": "1",
    "LOG_FORMAT": "json",
    "CONN_MAX_AGE": "600",
    "RATELIMIT_PRIVILEGES_PER_IP": str(10**9),
    "RATELIMIT_PRIVILEGES_PER_TOKEN": str(10**9),
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
}


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


def wrk(url: str, seconds: int, headers: dict[str, str] | None = None, script: Path | None = None):
    """(requests/s, p99 ms, requests) of `url`; fails on any non-2xx answer or socket error."""
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
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


ROTATION_LUA = """
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/v2/privileges", {["Authorization"] = "Bearer " .. tokens[i]})
end
"""


@contextlib.contextmanager
def gunicorn(overrides: dict[str, str], logdir: Path):
    """gunicorn (production configuration, 2 workers) on a free port with `overrides` in its environment."""
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--workers", "2"]
    cmd += ["--bind", f"127.0.0.1:{port}"]
    with (logdir / f"web-{port}.log").open("wb") as web_log:
        env = {**os.environ, **overrides}
        web = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=web_log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/bench/bare")
        yield base
    finally:
        web.terminate()
        try:
            web.wait(15)
        except subprocess.TimeoutExpired:
            web.kill()


@register("privileges")
def run() -> list[Row]:
    if not shutil.which("wrk"):
        raise SystemExit("bench privileges: wrk not found (Debian package `wrk`)")
    os.environ.update(BENCH_ENV)
    django_setup()
    from django.test import override_settings

    secrets = [make_token() for _ in range(ROTATION_TOKENS)]
    secret = secrets[0]
    queries = queries_per_request(secret)
    with override_settings(TOKEN_CHECK_CACHE_SECONDS=0):
        queries_uncached = queries_per_request(secret)
    log(
        f"/v2/privileges: {queries:.2f} queries per request, {queries_uncached:.2f} without the token-check cache"
    )

    logdir = Path(tempfile.mkdtemp(prefix="bench-privileges-"))
    tokens_file = logdir / "tokens.txt"
    tokens_file.write_text("\n".join(secrets) + "\n")
    rotation = logdir / "rotation.lua"
    rotation.write_text(ROTATION_LUA)
    os.environ["BENCH_TOKENS_FILE"] = str(tokens_file)
    results: dict[str, list[tuple[float, float]]] = {}

    def measure(name: str, url: str, headers=None, script=None) -> None:
        results.setdefault(name, []).append(wrk(url, SECONDS, headers, script)[:2])
        log(f"{name}: {results[name][-1][0]:,.0f} req/s, p99 {results[name][-1][1]:.2f} ms")

    bearer = {"Authorization": f"Bearer {secret}"}
    try:
        with gunicorn({}, logdir) as base:
            wrk(f"{base}/bench/bare", 2)  # warm-up: connections, imports, caches of both workers
            wrk(f"{base}/v2/privileges", 2, bearer)
            # Server side, honestly: PostgreSQL's own count of statements while wrk runs (health-check pings included).
            time.sleep(1.5)  # idle backends flush their statistics within a second
            before = server_statements()
            _, _, served = wrk(f"{base}/v2/privileges", 3, bearer)
            time.sleep(1.5)
            statements = (server_statements() - before - 1) / served  # minus this probe's own transaction
            log(f"/v2/privileges: {statements:.3f} PostgreSQL statements per request (pg_stat_database)")
            for _ in range(2):
                measure("bare", f"{base}/bench/bare")
                measure("privileges", f"{base}/v2/privileges", bearer)
            measure("rotation", f"{base}/v2/privileges", script=rotation)
        # The exact configuration: one token query and one Redis round trip per request.
        with gunicorn({"TOKEN_CHECK_CACHE_SECONDS": "0", "RATELIMIT_LOCAL_BATCH": "0"}, logdir) as base:
            wrk(f"{base}/v2/privileges", 2, bearer)
            measure("bare (exact server)", f"{base}/bench/bare")
            measure("exact", f"{base}/v2/privileges", bearer)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)

    def best(name: str) -> tuple[float, float]:
        return max(r[0] for r in results[name]), min(r[1] for r in results[name])

    (bare_rps, bare_p99), (rps, p99) = best("bare"), best("privileges")
    return [
        Row(
            "/v2/privileges req/s (gunicorn 2 workers, wrk)",
            rps,
            baseline=bare_rps,
            target=TARGET_RATIO * bare_rps,
        ),
        Row("/v2/privileges p99", p99, baseline=bare_p99, unit="ms", higher_is_better=False),
        Row(
            f"/v2/privileges req/s, {ROTATION_TOKENS:,} tokens in rotation",
            best("rotation")[0],
            baseline=bare_rps,
        ),
        Row(
            "/v2/privileges req/s, exact (no token cache, no local counts)",
            best("exact")[0],
            baseline=best("bare (exact server)")[0],
        ),
        Row("/v2/privileges ORM queries per request", queries, target=1, higher_is_better=False),
        Row(
            "/v2/privileges ORM queries per request, no token cache",
            queries_uncached,
            target=1,
            higher_is_better=False,
        ),
        Row("/v2/privileges PostgreSQL statements per request", statements),
    ]


if __name__ == "__main__":
    report(run())

"""Shared helpers of the benchmarks under bench/.

A benchmark is a file bench/<name>.py that registers one function returning rows:

    from _common import Row, register

    @register("import")
    def run() -> list[Row]:
        ...
        return [Row("import rows/s", value, baseline=..., target=20_000)]

`python bench/run_all.py [NAME...]` imports every bench/*.py (except those starting with `_` and run_all.py),
runs the registered functions (optionally only NAME...) and prints ONE table:
measure, value, baseline (measured in the same run), ratio (value / baseline), target, ok.
It exits 1 when a target is missed. `make bench` runs it against throw-away PostgreSQL and Redis.
"""

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
REGISTRY: dict[str, Callable[[], list["Row"]]] = {}


@dataclass
class Row:
    measure: str
    value: float
    baseline: float | None = None
    target: float | None = None
    unit: str = ""
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline

    @property
    def ok(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target


def register(name: str):
    def decorator(func: Callable[[], list[Row]]):
        REGISTRY[name] = func
        return func

    return decorator


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def report(rows: list[Row], out=None) -> None:
    """Print rows as one aligned table."""
    out = out or sys.stdout
    header = ("measure", "value", "baseline", "ratio", "target", "ok")
    lines = [header]
    for r in rows:
        target = None if r.target is None else ("≥ " if r.higher_is_better else "≤ ") + _fmt(r.target, r.unit)
        ok = "-" if r.ok is None else ("yes" if r.ok else "NO")
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append((r.measure, _fmt(r.value, r.unit), _fmt(r.baseline, r.unit), ratio, target or "-", ok))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    out.flush()


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


_django_ready = False


def django_setup(migrate: bool = True) -> None:
    """Set Django up on DATABASE_URL and migrate it (once per process)."""
    global _django_ready
    if _django_ready:
        return
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokenmgr.settings")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
    _django_ready = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The SMTP sink of the delivery benchmarks: an aiosmtpd server in its own process that counts what it receives and
# prints the count when stopped.
SINK = r"""
import asyncio, signal, sys
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 OK"
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
c.stop()
print(Count.n, flush=True)
"""


@dataclass
class SmtpSink:
    process: subprocess.Popen
    received: int | None = None  # known once the sink is stopped


@contextlib.contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    """The SMTP sink started on a free port, Django's mail settings pointed at it; stopped on exit, its count of
    received messages then in `received`."""
    from django.conf import settings

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout.readline().strip() == "ready"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    sink = SmtpSink(process)
    try:
        yield sink
    finally:
        process.terminate()
        sink.received = int(process.communicate(timeout=30)[0].strip().splitlines()[-1])


def in_processes(func: Callable, args: list) -> list:
    """func(arg) for each arg, each in its own forked process, all at once (as several Celery workers would);
    the database connections are closed before the fork and in each child after its call."""
    import multiprocessing

    from django.db import connections

    connections.close_all()
    with multiprocessing.get_context("fork").Pool(len(args)) as pool:
        return pool.map(_closing_connections, [(func, arg) for arg in args])


def _closing_connections(call: tuple[Callable, object]):
    from django.db import connections

    func, arg = call
    try:
        return func(arg)
    finally:
        connections.close_all()


def bench_id_offsets(cursor) -> tuple[int, int, int]:
    """The highest ids of tokens_client, tokens_token and tokens_contact: a bench's rows are numbered after them."""
    offsets = []
    for table in ("tokens_client", "tokens_token", "tokens_contact"):
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
        offsets.append(cursor.fetchone()[0])
    return offsets[0], offsets[1], offsets[2]


def bench_rows_settle(cursor, *more_tables: str) -> None:
    """After rows inserted with explicit ids: the id sequences moved past them, then the tables analyzed."""
    for table in ("tokens_client", "tokens_contact", "tokens_token"):
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    for table in (
        "tokens_client",
        "tokens_contact",
        "tokens_token",
        "tokens_token_contacts",
        "tokens_token_privileges",
        *more_tables,
    ):
        cursor.execute(f"VACUUM ANALYZE {table}")


def load_all() -> None:
    """Import every bench/*.py so that its @register runs."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    for path in sorted(BENCH_DIR.glob("*.py")):
        if path.name.startswith("_") or path.name == "run_all.py":
            continue
        module_name = f"bench_{path.stem}"
        if module_name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)


def run(names: list[str] | None = None) -> int:
    load_all()
    unknown = [n for n in names or [] if n not in REGISTRY]
    if unknown:
        sys.stderr.write(
            f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(sorted(REGISTRY))}\n"
        )
        return 2
    rows: list[Row] = []
    for name, func in REGISTRY.items():
        if names and name not in names:
            continue
        log(f"running {name}")
        rows.extend(func())
    report(rows)
    return 1 if any(r.ok is False for r in rows) else 0

"""import_tokens throughput on PostgreSQL vs a bare COPY of the same CSV (issue 2: ≥ 20,000 rows/s).

    BENCH_IMPORT_ROWS=1000000 python bench/run_all.py import

Generates BENCH_IMPORT_ROWS rows (default 1,000,000) spread over rows/20 clients (~50k for 1M), half with a legacy
secret, dates as YYYY-MM-DD, naive ISO 8601 and ISO 8601 with offset, ~1 % repeated rows (duplicates), then times
`import_tokens FILE --secrets-out FILE` on the migrated database of DATABASE_URL and, as the baseline, PostgreSQL
COPY of the same file into a bare 8-text-column table. Also logs the seconds spent per phase of the writes
(tokens.importing logs them at DEBUG level). `make bench` runs it against scripts/with_services.py's throw-away
PostgreSQL, whose settings (shared_buffers 2GB, max_wal_size 4GB, wal_buffers 64MB) hold the ~1.5 GB that a
1M-row import writes: figures measured elsewhere depend on that server's settings.
"""

import datetime as dt
import io
import logging
import os
import random
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, django_setup, log, register  # noqa: E402

TARGET_ROWS_PER_S = 20_000


def luhn_siret(rng: random.Random) -> str:
    while True:
        body = [rng.randint(0, 9) for _ in range(13)]
        total = 0
        for i, d in enumerate(reversed(body)):  # positions 1.. from the right once the key is appended
            if i % 2 == 0:
                d *= 2
                d -= 9 if d > 9 else 0
            total += d
        siret = "".join(map(str, body)) + str((10 - total % 10) % 10)
        if not siret.startswith("356000000"):
            return siret


def generate(path: str, rows: int, seed: int = 2) -> None:
    rng = random.Random(seed)
    from tokens.catalogue import PRIVILEGES

    codes = list(PRIVILEGES)
    n_clients = max(1, rows // 20)
    sirets = list({luhn_siret(rng) for _ in range(n_clients)})
    today = dt.date.today() - dt.timedelta(days=1)
    first = dt.date(2016, 1, 1)
    span = (today - first).days
    recent: list[str] = []
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("siret,name,label,privileges,issued_at,origin,contacts,secret\n")
        for i in range(rows):
            if recent and rng.random() < 0.01:
                out.write(rng.choice(recent))  # a repeated row: a duplicate
                continue
            c = rng.randrange(len(sirets))
            day = first + dt.timedelta(days=rng.randrange(span))
            kind = rng.random()
            if kind < 0.5:
                issued = day.isoformat()
            elif kind < 0.75:
                issued = f"{day.isoformat()}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
            else:
                issued = f"{day.isoformat()}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00+02:00"
            origin = ""
            if rng.random() < 0.3:
                origin = "demarches_simplifiees" if day < dt.date(2019, 9, 1) else "api_gouv"
            contacts = " ".join(f"contact{k}@commune{c}.fr" for k in rng.sample(range(4), rng.randrange(3)))
            secret = f"legacy_{secrets.token_hex(16)}" if rng.random() < 0.5 else ""
            privileges = " ".join(rng.sample(codes, rng.randint(1, 3)))
            line = (
                f'{sirets[c]},"Commune n°{c}",Jeton {i},{privileges},{issued},{origin},{contacts},{secret}\n'
            )
            out.write(line)
            if len(recent) < 1000:
                recent.append(line)
            elif rng.random() < 0.01:
                recent[rng.randrange(1000)] = line


def copy_baseline(path: str) -> float:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_bare")
        cursor.execute(
            "CREATE TABLE bench_bare (siret text, name text, label text, privileges text, issued_at text, "
            "origin text, contacts text, secret text)"
        )
        started = time.perf_counter()
        with (
            open(path, "rb") as f,
            cursor.copy("COPY bench_bare FROM STDIN WITH (FORMAT csv, HEADER true)") as copy,
        ):
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_bare")
    return elapsed


class _PhaseLog(logging.Handler):
    """Keeps the per-phase timings that tokens.importing logs at DEBUG level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@register("import")
def run() -> list[Row]:
    rows = int(os.environ.get("BENCH_IMPORT_ROWS", "1000000"))
    django_setup()
    from django.core.management import call_command
    from django.db import connection

    from tokens.models import Token

    if connection.vendor != "postgresql":
        log("import: skipped, DATABASE_URL is not PostgreSQL (run it through make bench)")
        return []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        path = os.path.join(tmp, "tokens.csv")
        secrets_out = os.path.join(tmp, "secrets.csv")
        log(f"import: generating {rows:,} rows")
        generate(path, rows)
        log(f"import: baseline COPY ({os.path.getsize(path) / 1e6:.0f} MB)")
        copy_s = copy_baseline(path)
        before = Token.objects.count()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        log("import: import_tokens")
        out = io.StringIO()
        phases = _PhaseLog()
        importing_log = logging.getLogger("tokens.importing")
        importing_log.addHandler(phases)
        level, importing_log.level = importing_log.level, logging.DEBUG
        importing_log.propagate = False  # shown below, once
        try:
            started = time.perf_counter()
            call_command("import_tokens", path, secrets_out=secrets_out, stdout=out, stderr=io.StringIO())
            import_s = time.perf_counter() - started
        finally:
            importing_log.removeHandler(phases)
            importing_log.setLevel(level)
            importing_log.propagate = True
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        imported = Token.objects.count() - before
        log(f"import: {out.getvalue().strip()} in {import_s:.1f} s (COPY: {copy_s:.1f} s)")
        for message in phases.messages:
            log(f"import: {message}")
    return [
        Row(
            f"import_tokens rows/s ({rows:,} rows)",
            rows / import_s,
            baseline=rows / copy_s,
            target=TARGET_ROWS_PER_S,
        ),
        Row("import_tokens tokens created", imported),
        Row("import_tokens peak RSS growth", (rss_after - rss_before) / 1024, unit="MB"),
    ]


if __name__ == "__main__":
    from _common import report

    report(run())

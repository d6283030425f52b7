"""import_tokens throughput on PostgreSQL, on three shapes of data, as the application's own non-superuser role.

    BENCH_IMPORT_ROWS=1000000 python bench/run_all.py import

For each shape, generates BENCH_IMPORT_ROWS rows (default 1,000,000), half with a legacy secret, dates as
YYYY-MM-DD, naive ISO 8601 and ISO 8601 with offset, ~1 % repeated rows (duplicates):

- `spread`: rows/20 clients (~50,000 for 1M), each row with 0 to 2 of its client's 4 addresses;
- `few clients`: 3 clients hold every token, each row with 1 or 2 of 5,000 addresses shared by the client's tokens;
- `one contact per token`: 3 clients, each row with an address of its own.

Each shape starts from an empty registry and runs `manage.py import_tokens FILE --secrets-out FILE -v 2` in a
process of its own, connected as `tokenmgr_app`, a NOSUPERUSER role that owns the application's tables as the
role running a deployment's migrations does (created here if missing): the figures include the command's start-up,
and its peak RSS is that process's own. The baseline is PostgreSQL COPY of the same file into a bare 8-text-column
table. The per-phase seconds that the command prints at verbosity 2 are logged. `make bench` runs it against scripts/with_services.py's throw-away PostgreSQL, whose
settings (shared_buffers 2GB, max_wal_size 4GB, wal_buffers 64MB) hold what a 1M-row import writes: figures
measured elsewhere depend on that server's settings.
"""

import contextlib
import datetime as dt
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Row, django_setup, log, register  # noqa: E402

TARGET_ROWS_PER_S = 20_000
MAX_SPREAD = 2.0  # each shape within this factor of the fastest
MAX_PEAK_RSS_MB = 300
APP_ROLE = "tokenmgr_app"
SHAPES = {  # name: (clients: a number or a divisor of the row count, addresses per client, addresses per row)
    "spread": ("rows/20", 4, (0, 2)),
    "few clients": (3, 5_000, (1, 2)),
    "one contact per token": (3, None, (1, 1)),
}


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


def generate(path: str, rows: int, shape: str, seed: int = 2) -> None:
    rng = random.Random(seed)
    from tokens.catalogue import PRIVILEGES

    clients, pool, (least, most) = SHAPES[shape]
    codes = list(PRIVILEGES)
    n_clients = max(1, rows // 20) if clients == "rows/20" else clients
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
            if pool is None:
                contacts = f"person{i}@commune{c}.fr"
            else:
                picked = rng.sample(range(pool), rng.randint(least, most))
                contacts = " ".join(f"contact{k}@commune{c}.fr" for k in picked)
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


def app_role_url() -> str:
    """DATABASE_URL for APP_ROLE: NOSUPERUSER, owner of the application's tables, as the role that runs the
    migrations of a deployment is (cookiecutter-django's POSTGRES_USER)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE])
        if not cursor.fetchone():
            cursor.execute(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        cursor.execute("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cursor.fetchall():
            cursor.execute(f"ALTER TABLE {table} OWNER TO {APP_ROLE}")
        cursor.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    url = urlsplit(os.environ["DATABASE_URL"])
    host = url.netloc.rpartition("@")[2]
    return urlunsplit(url._replace(netloc=f"{APP_ROLE}@{host}"))


def empty_registry() -> None:
    from django.db import connection

    from tokens.models import Client, TokenImport

    with connection.cursor() as cursor:
        tables = [connection.ops.quote_name(m._meta.db_table) for m in (Client, TokenImport)]
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


class ServerCpu(threading.Thread):
    """CPU seconds of APP_ROLE's PostgreSQL backends, read from /proc while they run (same machine)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seconds: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        import psycopg

        tick = os.sysconf("SC_CLK_TCK")
        with psycopg.connect(
            os.environ["DATABASE_URL"].replace("postgres://", "postgresql://"), autocommit=True
        ) as db:
            while not self.done.wait(0.2):
                pids = [
                    r[0]
                    for r in db.execute("SELECT pid FROM pg_stat_activity WHERE usename = %s", [APP_ROLE])
                ]
                for pid in pids:
                    with contextlib.suppress(OSError):
                        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                        self.seconds[pid] = (int(fields[11]) + int(fields[12])) / tick

    def total(self) -> float:
        self.done.set()
        self.join()
        return sum(self.seconds.values())


def import_as_app(path: str, secrets_out: str, url: str) -> tuple[float, float, float, float, str, str]:
    """(seconds, peak RSS in MB, the command's CPU seconds, its backend's CPU seconds, stdout, stderr) of
    import_tokens in a process of its own, as APP_ROLE."""
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "0"}
    command = [
        sys.executable,
        str(ROOT / "manage.py"),
        "import_tokens",
        path,
        "--secrets-out",
        secrets_out,
        "-v",
        "2",
    ]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server = ServerCpu()
        server.start()
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        server_cpu = server.total()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode:
        raise SystemExit(f"import_tokens failed ({proc.returncode}): {stderr[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, server_cpu, stdout, stderr


def database_floor(
    rows: int, url: str, *, foreign_keys: bool = True, privilege_set: bool = False
) -> dict[str, float]:
    """Seconds of the inserts alone, as APP_ROLE: `rows` tokens already prepared in SQL (two privileges and a contact
    of its own each, as the shapes have on average), inserted into the real tables with their indexes and foreign
    keys by plain INSERT ... SELECT, then rolled back. No file, no validation, no duplicate check: the ceiling of any
    import on this database and machine.

    Without `foreign_keys`, the written tables' foreign keys are dropped first, inside the same rolled-back
    transaction (APP_ROLE owns the tables): what their checks cost. An import cannot do that, since the drop locks the
    tables against every read until the commit.

    With `privilege_set`, the token holds its privilege set as one foreign-key column instead of two link rows: a
    schema the maintainers could choose (README, "Migrating tokens"). The column is added inside the rolled-back
    transaction and references the privilege catalogue, a table as small as the distinct sets would be."""
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://")) as db:  # one transaction, rolled back
        if not foreign_keys:
            written = ["tokens_token", "tokens_token_privileges", "tokens_contact", "tokens_token_contacts"]
            for table, name in db.execute(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint "
                "WHERE contype = 'f' AND conrelid = ANY(%s::regclass[])",
                [written],
            ).fetchall():
                db.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        if privilege_set:
            db.execute(
                "ALTER TABLE tokens_token ADD COLUMN bench_privilege_set_id bigint "
                "REFERENCES tokens_privilege (id) DEFERRABLE INITIALLY DEFERRED"
            )
        db.execute("SET LOCAL work_mem = '256MB'")
        db.execute("SET CONSTRAINTS ALL IMMEDIATE")
        run_id = db.execute(
            "INSERT INTO tokens_tokenimport (file_name, run_by, started_at, rows, imported, duplicates) "
            "VALUES ('floor', 'bench', now(), 0, 0, 0) RETURNING id"
        ).fetchone()[0]
        db.execute(
            "INSERT INTO tokens_client (name, siret, created_at) "
            "SELECT 'Client ' || g, lpad(g::text, 14, '0'), now() FROM generate_series(1, %s) g",
            [max(1, rows // 20)],
        )
        db.execute(
            """
            CREATE TEMPORARY TABLE floor_src AS
            WITH p AS (SELECT array_agg(id ORDER BY id) AS ids, count(*) AS n FROM tokens_privilege)
            SELECT nextval(pg_get_serial_sequence('tokens_token', 'id')) AS token_id, c.id AS client_id,
                   'Jeton ' || g AS label, now() - g * interval '1 minute' AS issued_at,
                   now() + g * interval '1 minute' AS expires_at, md5(g::text) || md5((-g)::text) AS digest,
                   'person' || g || '@example.org' AS email,
                   p.ids[1 + g %% p.n] AS p1, p.ids[1 + (g + 1) %% p.n] AS p2
            FROM generate_series(1, %s) g CROSS JOIN p
            JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM tokens_client) c ON c.k = g %% %s
            """,
            [rows, max(1, rows // 20)],
        )
        db.execute("ANALYZE floor_src")
        set_column, set_value = (", bench_privilege_set_id", ", p1") if privilege_set else ("", "")
        statements = {
            "tokens": (
                "INSERT INTO tokens_token (id, public_id, client_id, label, issued_at, expires_at, origin, "
                f"secret_prefix, secret_digest, revocation_reason, created_at, imported_by_run_id{set_column}) "
                "SELECT token_id, gen_random_uuid(), client_id, label, issued_at, expires_at, 'api_gouv', "
                f"left(digest, 8), digest, '', now(), %s{set_value} FROM floor_src",
                [run_id],
            ),
            "analyze": ("ANALYZE tokens_token", []),
            "privilege links": (
                "INSERT INTO tokens_token_privileges (token_id, privilege_id) "
                "SELECT token_id, p1 FROM floor_src UNION ALL SELECT token_id, p2 FROM floor_src",
                [],
            ),
            "contacts": (
                "INSERT INTO tokens_contact (client_id, email, name, phone, role) "
                "SELECT client_id, email, '', '', 'requester' FROM floor_src",
                [],
            ),
            "contact links": (
                "INSERT INTO tokens_token_contacts (token_id, contact_id) SELECT s.token_id, k.id FROM floor_src s "
                "JOIN tokens_contact k ON k.client_id = s.client_id AND k.email = s.email AND k.role = 'requester'",
                [],
            ),
        }
        if privilege_set:
            del statements["privilege links"]
        seconds: dict[str, float] = {}
        for name, (sql, params) in statements.items():
            started = time.perf_counter()
            db.execute(sql, params)
            seconds[name] = time.perf_counter() - started
        db.rollback()
    return seconds


@register("import")
def run() -> list[Row]:
    rows = int(os.environ.get("BENCH_IMPORT_ROWS", "1000000"))
    django_setup()
    from django.db import connection

    from tokens.models import Token

    if connection.vendor != "postgresql":
        log("import: skipped, DATABASE_URL is not PostgreSQL (run it through make bench)")
        return []
    url = app_role_url()
    results: list[Row] = []
    speeds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        for n, shape in enumerate(SHAPES):
            path = os.path.join(tmp, "tokens.csv")
            secrets_out = os.path.join(tmp, f"secrets-{n}.csv")
            log(f"import [{shape}]: generating {rows:,} rows")
            generate(path, rows, shape, seed=2 + n)
            empty_registry()
            copy_s = copy_baseline(path)
            log(f"import [{shape}]: import_tokens as {APP_ROLE} (NOSUPERUSER)")
            seconds, peak_mb, client_cpu, server_cpu, stdout, stderr = import_as_app(path, secrets_out, url)
            imported = Token.objects.count()
            log(
                f"import [{shape}]: {stdout.strip()} in {seconds:.1f} s (COPY: {copy_s:.1f} s), peak RSS {peak_mb:.0f} MB"
            )
            log(
                f"import [{shape}]: CPU seconds: command {client_cpu:.1f}, its PostgreSQL backend {server_cpu:.1f}"
            )
            for line in stderr.splitlines():
                if "phases" in line:
                    log(f"import [{shape}]: {line.strip()}")
            speeds[shape] = rows / seconds
            results += [
                Row(
                    f"import_tokens rows/s, {shape} ({rows:,} rows)",
                    speeds[shape],
                    baseline=rows / copy_s,
                    target=TARGET_ROWS_PER_S,
                ),
                # What the machine's load hides: rows per second of CPU used, command and database together.
                Row(f"import_tokens rows per CPU second, {shape}", rows / (client_cpu + server_cpu)),
                Row(f"import_tokens tokens created, {shape}", imported),
                Row(
                    f"import_tokens peak RSS, {shape}",
                    peak_mb,
                    unit="MB",
                    target=MAX_PEAK_RSS_MB,
                    higher_is_better=False,
                ),
            ]
            os.unlink(path)
    floor: dict[str, float] = {}  # rows/s of each variant
    for variant, options, how in (
        ("tables", {}, ""),
        (
            "no foreign keys",
            {"foreign_keys": False},
            ", without the tables' foreign keys (dropped, then rolled back)",
        ),
        ("privilege set", {"privilege_set": True}, ", each token's privilege set as one foreign-key column"),
    ):
        log(f"import [floor]: {rows:,} prepared rows inserted by INSERT ... SELECT only{how}, as {APP_ROLE}")
        # Each variant from empty tables: the dead index entries that the previous one left behind (same digests,
        # rolled back) would slow its unique checks.
        empty_registry()
        seconds = database_floor(rows, url, **options)
        log("import [floor]: seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
        floor[variant] = rows / sum(seconds.values())
    results += [
        Row("import floor: prepared rows inserted by SQL alone, rows/s", floor["tables"]),
        Row(
            "import floor without foreign keys (what their checks cost), rows/s",
            floor["no foreign keys"],
            baseline=floor["tables"],
        ),
        Row(
            "import floor with a token's privilege set as one column (a schema change), rows/s",
            floor["privilege set"],
            baseline=floor["tables"],
        ),
    ]
    fastest = max(speeds.values())
    results.append(
        Row(
            "import_tokens slowest shape / fastest",
            min(speeds.values()),
            baseline=fastest,
            target=fastest / MAX_SPREAD,
        )
    )
    return results


if __name__ == "__main__":
    from _common import report

    report(run())

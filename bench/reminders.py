"""Reminder sweep and delivery on 1,000,000 tokens.

    python bench/run_all.py reminders          (or standalone: python bench/reminders.py; DATABASE_URL on PostgreSQL)

Builds BENCH_REMINDER_TOKENS tokens (default 1,000,000) with INSERT … SELECT generate_series, expiries spread over the
18 months after the bench day D (2031-06-02, far from any other benchmark's tokens), 2 % revoked, 3 % superseded,
1-2 contacts and privileges each. The ledger is filled as if the daily sweeps of every day before D had run (steady
state). Then it times, on the same warm database:
- baseline: one raw SQL SELECT of exactly the rows due on D (rule of docs/domain.md, anti-join on the ledger);
- the sweep of D (reminders_sweep: keyset batches, rule in SQL, INSERT … ON CONFLICT DO NOTHING of the ledger rows and
  of their messages, one per recipient), its query count;
- delivery of the messages it queued (one per recipient: requester, and the technical contact of every other token,
  the same address for 10 % of the clients) to an aiosmtpd sink running in another process (messages/s), by
  BENCH_DELIVERY_WORKERS processes (default 4: delivery sends over one SMTP connection per process and records
  each outcome right after its send, so parallelism comes from processes, as Celery concurrency gives it) each
  running reminders_deliver (leased SKIP LOCKED claims share the messages); the CPU time of the senders and of the
  sink per message. BENCH_PROFILE=1: one process under pyinstrument.
"""

import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
from _common import Row, django_setup, log, register, report  # noqa: E402

DAY = dt.date(2031, 6, 2)
TARGET_SWEEP_S = 5.0
TARGET_RATIO = 3.0
TARGET_MESSAGES_PER_S = 300


def build(n_tokens: int) -> None:
    """Clients, contacts, tokens, their contacts and privileges, set-based; then the steady-state ledger."""
    from django.db import connection

    from tokens import validity

    n_clients = max(1, n_tokens // 20)
    start = validity.start_of_day(DAY)
    span_s = int((validity.start_of_day(DAY.replace(year=DAY.year + 1, month=12)) - start).total_seconds())
    with connection.cursor() as c:
        c0, t0, k0 = _common.bench_id_offsets(c)
        log(f"building {n_clients:,} clients, {n_tokens:,} tokens")
        c.execute(
            "INSERT INTO tokens_client (id, name, siret, created_at) "
            "SELECT %s + g, 'Bench client ' || g, lpad((900000000000 + %s + g)::text, 14, '9'), now() "
            "FROM generate_series(1, %s) g",
            [c0, c0, n_clients],
        )
        # Two contacts per client: requester + technical (the same address for 10 %: deduplicated at send time).
        c.execute(
            "INSERT INTO tokens_contact (id, client_id, email, name, phone, role) "
            "SELECT %s + 2 * g - 1 + r, %s + g, "
            "CASE WHEN r = 1 AND g %% 10 = 0 THEN 'Contact0.' || g || '@bench.example.org' "
            "ELSE 'contact' || r || '.' || g || '@bench.example.org' END, "
            "'Contact ' || r, '', CASE r WHEN 0 THEN 'requester' ELSE 'technical' END "
            "FROM generate_series(1, %s) g, generate_series(0, 1) r",
            [k0, c0, n_clients],
        )
        c.execute(
            "INSERT INTO tokens_token (id, public_id, client_id, label, issued_at, expires_at, origin, secret_prefix, "
            "secret_digest, revoked_at, revocation_reason, renewed_by_id, created_at) "
            "SELECT %s + g, md5(g::text || 'bench')::uuid, %s + 1 + (g %% %s), 'Jeton ' || g, "
            "e - interval '18 months', e, CASE WHEN g %% 3 = 0 THEN 'demarches_simplifiees' ELSE 'api_gouv' END, "
            "'tkm_' || substr(md5(g::text), 1, 8), md5(g::text || 'digest') || md5(g::text), "
            "CASE WHEN g %% 50 = 7 THEN e - interval '200 days' END, '', NULL, now() "
            "FROM (SELECT g, %s::timestamptz + make_interval(secs => (g::bigint * %s / %s)) AS e "
            "      FROM generate_series(1, %s) g) s",
            [t0, c0, n_clients, start, span_s, n_tokens, n_tokens],
        )
        # 3 % superseded: point at the next token (a renewal already issued).
        c.execute(
            "UPDATE tokens_token SET renewed_by_id = id + 1 WHERE id > %s AND id < %s AND (id - %s) %% 33 = 5",
            [t0, t0 + n_tokens, t0],
        )
        c.execute(
            "INSERT INTO tokens_token_contacts (token_id, contact_id) "
            "SELECT t.id, %s + 2 * (t.client_id - %s) - 1 + r FROM tokens_token t, generate_series(0, 1) r "
            "WHERE t.id > %s AND (r = 0 OR t.id %% 2 = 0)",
            [k0, c0, t0],
        )
        c.execute(
            "INSERT INTO tokens_token_privileges (token_id, privilege_id) "
            "SELECT t.id, p.id FROM tokens_token t JOIN tokens_privilege p "
            "ON p.code IN ('entreprises', CASE WHEN t.id %% 2 = 0 THEN 'etablissements' ELSE 'entreprises' END) "
            "WHERE t.id > %s",
            [t0],
        )
        # Steady state: what the daily sweeps up to D-1 sent (threshold t once days left on D-1 was <= t).
        prev = DAY - dt.timedelta(days=1)
        c.execute(
            "INSERT INTO notifications_reminder (token_id, threshold, expires_at, route, status, "
            "last_error, sent_at, recipients, created_at, updated_at) "
            "SELECT t.id, th, t.expires_at, t.origin, 'sent', '', now(), '[]', now(), now() "
            "FROM tokens_token t, unnest(%s::int[]) th "
            "WHERE t.id > %s AND t.expires_at >= %s AND t.expires_at < %s "
            "AND ((t.expires_at AT TIME ZONE %s)::date - %s::date) <= th",
            [
                sorted(_days()),
                t0,
                validity.start_of_day(DAY),
                validity.start_of_day(prev + dt.timedelta(days=max(_days()) + 1)),
                validity.local_tz().key,
                prev,
            ],
        )
        log(f"ledger: {c.rowcount:,} reminders already sent before {DAY}")
        _common.bench_rows_settle(c, "notifications_reminder")


def _days() -> list[int]:
    from django.conf import settings

    return list(settings.REMINDER_DAYS)


def baseline_sql() -> tuple[str, list]:
    """The rows due on DAY, as one hand-written SELECT: the floor any sweep has to pay."""
    from tokens import validity

    steps = sorted(_days())
    bounds = [validity.start_of_day(DAY + dt.timedelta(days=t + 1)) for t in steps]
    case = "CASE " + " ".join(f"WHEN t.expires_at < %s THEN {t}" for t in steps) + " END"
    sql = (
        f"SELECT t.id, t.expires_at, t.origin, d.th FROM tokens_token t "
        f"CROSS JOIN LATERAL (SELECT {case} AS th) d "
        "WHERE t.revoked_at IS NULL AND t.renewed_by_id IS NULL AND t.expires_at >= %s AND t.expires_at < %s "
        "AND NOT EXISTS (SELECT 1 FROM notifications_reminder r WHERE r.token_id = t.id "
        "AND r.expires_at = t.expires_at AND r.threshold <= d.th AND r.status IN ('pending', 'sending', 'sent')) "
        "AND NOT EXISTS (SELECT 1 FROM notifications_reminderoptout o WHERE o.token_id = t.id)"
    )
    return sql, [*bounds, validity.start_of_day(DAY + dt.timedelta(days=1)), bounds[-1]]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def deliver(_=None):
    """One delivery run of the messages due on DAY (one worker)."""
    from notifications import delivery

    return delivery.reminders_deliver(today=DAY)


@register("reminders")
def run() -> list[Row]:
    django_setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from notifications import delivery as reminder_delivery
    from notifications import sweep
    from notifications.models import OPEN_STATUSES, Reminder, ReminderMessage

    n_tokens = int(os.environ.get("BENCH_REMINDER_TOKENS", "1000000"))
    t = time.perf_counter()
    build(n_tokens)
    log(f"built in {time.perf_counter() - t:.1f}s")

    sql, params = baseline_sql()
    with connection.cursor() as c:
        c.execute(sql, params)  # warm-up
        t = time.perf_counter()
        c.execute(sql, params)
        due = c.fetchall()
        baseline_s = time.perf_counter() - t
    log(f"baseline: {len(due):,} due rows in {baseline_s:.3f}s")

    with CaptureQueriesContext(connection) as queries:
        t = time.perf_counter()
        result = sweep.reminders_sweep(today=DAY)
        sweep_s = time.perf_counter() - t
    log(
        f"sweep: {result.queued:,} reminders ({result.messages:,} messages) queued in {sweep_s:.3f}s, "
        f"{len(queries)} queries, {result.batches} batches"
    )
    assert result.queued == len(due), (result.queued, len(due))
    again = sweep.reminders_sweep(today=DAY).queued
    assert again == 0, again

    # Delivery to a real SMTP server in another process.
    profiler = None
    if os.environ.get("BENCH_PROFILE"):  # one process, pyinstrument's tree on stderr
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    workers = int(os.environ.get("BENCH_DELIVERY_WORKERS", "4"))
    log(
        f"delivery: {workers} worker process(es) x 1 SMTP connection, claims of "
        f"{settings.REMINDER_DELIVERY_BATCH}; load average {os.getloadavg()[0]:.1f}"
    )
    import resource

    with _common.smtp_sink() as sink:
        sink_cpu = _cpu_seconds(sink.process.pid)
        own_cpu = sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime for who in (0, -1))
        t = time.perf_counter()
        if workers > 1 and not profiler:
            # Several delivery workers at once (SKIP LOCKED shares the rows).
            delivery = reminder_delivery.DeliveryResult()
            for part in _common.in_processes(deliver, [None] * workers):
                delivery += part
        else:
            delivery = deliver()
        deliver_s = time.perf_counter() - t
        sink_cpu = _cpu_seconds(sink.process.pid) - sink_cpu
        own_cpu = (
            sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime for who in (0, -1))
            - own_cpu
        )
    log(
        f"delivery CPU: {own_cpu:.2f}s in the delivering processes, {sink_cpu:.2f}s in the SMTP sink "
        f"(PostgreSQL not counted); load average {os.getloadavg()[0]:.1f}"
    )
    if profiler:
        profiler.stop()
        sys.stderr.write(profiler.output_text(unicode=True, show_all=False))
    received = sink.received
    log(
        f"delivery: {delivery.sent:,} messages sent ({received:,} received) in {deliver_s:.2f}s, "
        f"{delivery.failed} failed"
    )
    assert received == delivery.sent == result.messages
    assert not ReminderMessage.objects.filter(status__in=OPEN_STATUSES).exists()
    assert not Reminder.objects.filter(status__in=OPEN_STATUSES).exists()

    return [
        Row(
            "reminders: sweep of one day (1M tokens)",
            sweep_s,
            baseline=baseline_s,
            target=TARGET_SWEEP_S,
            unit="s",
            higher_is_better=False,
        ),
        Row(
            "reminders: sweep / raw SQL of the due rows",
            sweep_s / baseline_s,
            target=TARGET_RATIO,
            higher_is_better=False,
        ),
        Row("reminders: sweep queries", len(queries)),
        Row("reminders: reminders queued", result.queued, baseline=len(due)),
        Row("reminders: messages queued (one per recipient)", result.messages),
        Row(
            f"reminders: delivery to SMTP ({workers} proc x 1 conn)",
            delivery.sent / deliver_s,
            target=TARGET_MESSAGES_PER_S,
            unit="messages/s",
        ),
        Row("reminders: delivery CPU per message, senders", own_cpu / delivery.sent * 1000, unit="ms"),
        Row("reminders: delivery CPU per message, SMTP sink", sink_cpu / delivery.sent * 1000, unit="ms"),
    ]


if __name__ == "__main__":
    rows = run()
    report(rows)
    sys.exit(1 if any(r.ok is False for r in rows) else 0)

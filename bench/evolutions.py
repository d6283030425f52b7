"""Publishing an evolution that affects 100,000 tokens held by 20,000 people: queue, then deliver to an SMTP sink;
against the reminders' delivery of as many messages to the same people, in the same run.

    python bench/run_all.py evolutions        (or standalone: python bench/evolutions.py; DATABASE_URL on PostgreSQL)

Builds BENCH_EVOLUTION_PEOPLE clients (default 20,000), one contact each (the person), BENCH_EVOLUTION_TOKENS_EACH
tokens per client (default 5) holding a privilege of their own ('bench_evolutions', granting one endpoint of its
own, so that no other benchmark's tokens are affected); the first token of each client expires 15 days after the
bench day D (2033-03-01), the others much later. Then it times:
- the publication (evolution_publish: one transaction, the affected people found in SQL, one notice per person);
- the delivery of the notices by BENCH_DELIVERY_WORKERS processes (default 4, each evolution_notices_deliver over
  one SMTP connection; SKIP LOCKED claims share the rows) to an aiosmtpd sink in another process (messages/s);
- baseline: the reminders' sweep of D (one reminder per person: their first token) and its delivery by as many
  processes to the same sink (messages/s).
"""

import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
from _common import Row, django_setup, log, register, report  # noqa: E402

DAY = dt.date(2033, 3, 1)
TARGET_PUBLISH_S = 10.0
TARGET_RATIO = 0.5  # evolution messages/s over reminder messages/s, same run, same sink, same processes
PRIVILEGE = "bench_evolutions"
ENDPOINT = "bench/evolutions"


def build(people: int, each: int) -> tuple[int, int]:
    """Clients, one contact each, `each` tokens per client with the bench privilege; returns (privilege, endpoint)."""
    from django.db import connection

    from tokens import validity
    from tokens.models import Endpoint, Privilege

    privilege, _ = Privilege.objects.get_or_create(code=PRIVILEGE, defaults={"label": "Bench évolutions"})
    endpoint, _ = Endpoint.objects.get_or_create(path=ENDPOINT, defaults={"label": "Bench évolutions"})
    endpoint.privileges.add(privilege)
    soon = validity.start_of_day(DAY + dt.timedelta(days=15)) + dt.timedelta(hours=12)
    later = soon + dt.timedelta(days=400)
    with connection.cursor() as c:
        c0, t0, k0 = _common.bench_id_offsets(c)
        log(f"building {people:,} clients and people, {people * each:,} tokens")
        c.execute(
            "INSERT INTO tokens_client (id, name, siret, created_at) "
            "SELECT %s + g, 'Bench évolutions ' || g, lpad((800000000000 + %s + g)::text, 14, '8'), now() "
            "FROM generate_series(1, %s) g",
            [c0, c0, people],
        )
        c.execute(
            "INSERT INTO tokens_contact (id, client_id, email, name, phone, role) "
            "SELECT %s + g, %s + g, 'person' || (%s + g) || '@evolutions.bench.example.org', 'Personne ' || g, '', "
            "'requester' FROM generate_series(1, %s) g",
            [k0, c0, c0, people],
        )
        c.execute(
            "INSERT INTO tokens_token (id, public_id, client_id, label, issued_at, expires_at, origin, secret_prefix, "
            "secret_digest, revoked_at, revocation_reason, renewed_by_id, created_at) "
            "SELECT %s + n, md5(n::text || 'bench-evolutions')::uuid, %s + 1 + (n - 1) / %s, 'Jeton ' || n, "
            "e - interval '18 months', e, 'api_gouv', 'tkm_' || substr(md5(n::text), 1, 8), "
            "md5(n::text || 'evolutions') || md5(n::text || 'digest'), NULL, '', NULL, now() "
            "FROM (SELECT n, CASE WHEN (n - 1) %% %s = 0 THEN %s::timestamptz ELSE %s::timestamptz END AS e "
            "      FROM generate_series(1, %s) n) s",
            [t0, c0, each, each, soon, later, people * each],
        )
        c.execute(
            "INSERT INTO tokens_token_contacts (token_id, contact_id) "
            "SELECT t.id, %s + (t.client_id - %s) FROM tokens_token t WHERE t.id > %s",
            [k0, c0, t0],
        )
        c.execute(
            "INSERT INTO tokens_token_privileges (token_id, privilege_id) SELECT t.id, %s FROM tokens_token t "
            "WHERE t.id > %s",
            [privilege.pk, t0],
        )
        _common.bench_rows_settle(c)
    return privilege.pk, endpoint.pk


def _evolutions_delivered(now) -> int:
    from evolutions import services

    return services.evolution_notices_deliver(now=now).sent


def _reminders_delivered(_) -> int:
    from notifications import delivery

    return delivery.reminders_deliver(today=DAY).sent


def _in_processes(func, arg, workers: int) -> tuple[int, float]:
    """func(arg) in `workers` forked processes at once; returns (messages sent, seconds)."""
    t = time.perf_counter()
    sent = sum(_common.in_processes(func, [arg] * workers))
    return sent, time.perf_counter() - t


@register("evolutions")
def run() -> list[Row]:
    django_setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from evolutions import services
    from evolutions.models import Evolution, EvolutionNotice, EvolutionStatus
    from notifications import sweep as reminders

    people = int(os.environ.get("BENCH_EVOLUTION_PEOPLE", "20000"))
    each = int(os.environ.get("BENCH_EVOLUTION_TOKENS_EACH", "5"))
    workers = int(os.environ.get("BENCH_DELIVERY_WORKERS", "4"))
    t = time.perf_counter()
    _, endpoint_id = build(people, each)
    log(f"built in {time.perf_counter() - t:.1f}s")

    # Publication: queue one notice per person.
    entry = Evolution.objects.create(
        kind="endpoints", title="Retrait de l'endpoint du bench", body="**Bench**", effective_on=DAY
    )
    entry.endpoints.set([endpoint_id])
    now = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        t = time.perf_counter()
        published = services.evolution_publish(evolution=entry, now=now)
        publish_s = time.perf_counter() - t
    log(f"publication: {published.notices:,} notices queued in {publish_s:.2f}s, {len(queries)} queries")
    assert published.notices == people, published.notices
    assert Evolution.objects.get(pk=entry.pk).status == EvolutionStatus.PUBLISHED

    with _common.smtp_sink() as sink:
        due = services.digest_due(services.digest_day(now)) + dt.timedelta(minutes=1)
        log(f"evolution delivery: {workers} process(es); load average {os.getloadavg()[0]:.1f}")
        evo_sent, evo_s = _in_processes(_evolutions_delivered, due, workers)
        log(f"evolution delivery: {evo_sent:,} messages in {evo_s:.2f}s")
        assert evo_sent == people and EvolutionNotice.objects.filter(status="sent").count() >= people

        # Baseline in the same run: the reminders of the same people (one token each due on DAY).
        t = time.perf_counter()
        sweep = reminders.reminders_sweep(today=DAY)
        sweep_s = time.perf_counter() - t
        log(f"reminders: {sweep.messages:,} messages queued in {sweep_s:.2f}s; load {os.getloadavg()[0]:.1f}")
        rem_sent, rem_s = _in_processes(_reminders_delivered, None, workers)
        log(f"reminders delivery: {rem_sent:,} messages in {rem_s:.2f}s")
    assert sink.received == evo_sent + rem_sent, (sink.received, evo_sent, rem_sent)
    evo_rate, rem_rate = evo_sent / evo_s, rem_sent / rem_s
    return [
        Row(
            f"evolutions: publish, queue {people:,} people ({people * each:,} tokens)",
            publish_s,
            target=TARGET_PUBLISH_S,
            unit="s",
            higher_is_better=False,
        ),
        Row("evolutions: publish queries", len(queries)),
        Row(
            f"evolutions: delivery to SMTP ({workers} proc)",
            evo_rate,
            baseline=rem_rate,
            unit="messages/s",
        ),
        Row("evolutions: delivery rate / reminders' rate", evo_rate / rem_rate, target=TARGET_RATIO),
        Row(
            "evolutions: queue + deliver",
            evo_sent / (publish_s + evo_s),
            baseline=rem_sent / (sweep_s + rem_s),
            unit="messages/s",
        ),
        Row(f"reminders (same run): delivery to SMTP ({workers} proc)", rem_rate, unit="messages/s"),
    ]


if __name__ == "__main__":
    rows = run()
    report(rows)
    sys.exit(1 if any(r.ok is False for r in rows) else 0)

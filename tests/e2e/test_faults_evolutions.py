"""Fault tests of evolution notices through the real topology (Celery workers, beat, SMTP sink, PostgreSQL, Redis):
the same outbox as the reminders, so the same faults. The unit checked is the (person, digest day) notice."""

import collections
import signal
import time

import pytest

from tests.e2e.topology import Topology

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

PEOPLE = 1500

PUBLISH = """
from evolutions.models import Evolution
from evolutions.services import evolution_publish
from tokens.models import Endpoint
from django.utils import timezone
for title in ("Retrait de la v2", "Nouveau paramètre obligatoire"):
    entry = Evolution.objects.create(kind="endpoints", title=title, effective_on=timezone.now().date())
    entry.endpoints.set(Endpoint.objects.filter(privileges__code="entreprises"))
    print(evolution_publish(evolution=entry).notices)
"""


def notices(topo: Topology) -> list[tuple]:
    return topo.sql("SELECT email, digest_on, status, message_id FROM evolutions_evolutionnotice")


def sent_rows(topo: Topology) -> int:
    return int(topo.sql("SELECT count(*) FROM evolutions_evolutionnotice WHERE status = 'sent'")[0][0])


def test_worker_sigkill_and_smtp_down_during_evolution_notices(report):
    """Two entries published the same day to 1,500 people: one digest each. SIGKILL a worker and stop the SMTP sink
    during delivery: every person gets one message, under one Message-ID, at most the one in flight twice."""
    env = {
        "EVOLUTION_DELIVERY_INTERVAL": "1",
        "REMINDER_DELIVERY_BATCH": "20",
        "REMINDER_RETRY_BASE_SECONDS": "1",
        "REMINDER_RETRY_FACTOR": "2",
        "REMINDER_RETRY_MAX_SECONDS": "2",
        "REMINDER_MAX_ATTEMPTS": "100",
    }
    with Topology(extra_env=env) as topo:
        for name in ("worker1", "worker2"):
            topo.kill(name, signal.SIGTERM)
        for name in ("worker1", "worker2", "worker4"):
            topo.start_worker(name, concurrency=1)
        topo.import_due_tokens(PEOPLE, days_left=200)
        published = topo.manage("shell", "-c", PUBLISH).stdout.split()[-2:]  # after the shell's own banner
        report(f"published 2 entries, each attached to {published} notices")
        assert published == [str(PEOPLE), str(PEOPLE)]
        assert len(notices(topo)) == PEOPLE  # a digest, not a storm
        topo.sql("UPDATE evolutions_evolutionnotice SET next_attempt_at = now()")  # the digest hour has come
        topo.start_beat()
        started = time.monotonic()
        topo.wait_until(lambda: topo.mail_count() >= PEOPLE // 4, timeout=180, what="a quarter delivered")
        topo.kill("worker1", signal.SIGKILL)
        report(
            f"SIGKILL worker1 after {time.monotonic() - started:.1f}s, {topo.mail_count()} mails in the sink"
        )
        topo.start_worker("worker3", concurrency=1)
        topo.wait_until(lambda: topo.mail_count() >= PEOPLE // 2, timeout=180, what="half delivered")
        topo.stop_smtp()
        at_stop = topo.mail_count()
        time.sleep(5)
        failing = topo.sql("SELECT count(*) FROM evolutions_evolutionnotice WHERE last_error <> ''")[0][0]
        report(f"SMTP sink stopped with {at_stop} mails; {failing} notices failed meanwhile")
        assert topo.mail_count() == at_stop
        topo.start_smtp()
        topo.wait_until(lambda: sent_rows(topo) >= PEOPLE, timeout=300, what="every notice sent")
        elapsed = time.monotonic() - started
        time.sleep(1)
        rows = notices(topo)
        headers = topo.headers(names=("Message-ID", "To", "X-Evolution-Digest", "X-Evolution-Ids"))
        per_person = collections.Counter((h["To"], h["X-Evolution-Digest"]) for h in headers)
        ids = collections.defaultdict(set)
        for h in headers:
            ids[h["To"]].add(h["Message-ID"])
        resent = sum(n - 1 for n in per_person.values())
        report(
            f"{len(rows)} notices {dict(collections.Counter(r[2] for r in rows))} in {elapsed:.1f}s; sink: "
            f"{len(headers)} mails for {len(per_person)} people, {resent} delivered twice"
        )
        assert {r[2] for r in rows} == {"sent"}
        assert {(r[0], r[1]) for r in rows} == set(per_person), "a notice was lost, or a mail matches none"
        assert all(len(h["X-Evolution-Ids"].split(",")) == 2 for h in headers)  # both entries in one message
        assert max(len(v) for v in ids.values()) == 1, "one notice sent under two Message-IDs"
        assert resent <= 1, f"{resent} notices delivered twice for one kill"

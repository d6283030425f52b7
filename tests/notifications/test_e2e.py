"""End to end with real parts: a Celery worker process on the real Redis broker, a real SMTP server on loopback.

SMTP down → messages stay pending (attempts counted, nothing marked sent); SMTP back → each reminder is sent once to
each recipient, in a message of their own.
"""

import contextlib
import email
import os
import socket
import subprocess
import sys
import time
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.db import connection

from notifications import tasks
from notifications.models import Reminder, ReminderMessage, ReminderStatus
from tokenmgr.celery import app as celery_app
from tokens import validity

from .conftest import make_token

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("celery-e2e")]


class Sink:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            (envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=policy.default))
        )
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def broker_url() -> str:
    base = os.environ.get("CELERY_BROKER_URL", "")
    if not base.startswith("redis://"):
        pytest.skip("needs the Redis broker (scripts/with_services.py)")
    # A database of its own, so that no other worker of the suite takes these tasks.
    return base.rsplit("/", 1)[0] + "/7"


def database_url() -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture
def worker(tmp_path):
    port = free_port()
    broker = broker_url()
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker,
        "EMAIL_URL": f"smtp://127.0.0.1:{port}",
        "SITE_URL": "https://jetons.example.gouv.fr",
        "REMINDER_RETRY_BASE_SECONDS": "1",
        "REMINDER_RETRY_FACTOR": "1",
        "DEBUG": "0",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("celery")),
                "-A",
                "tokenmgr",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"e2e-{os.getpid()}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: b"ready." in log.read_bytes() or proc.poll() is not None, 90, "the worker")
        assert proc.poll() is None, log.read_text()
        with celery_app.connection_for_write(broker) as conn:
            yield {"port": port, "conn": conn, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def states():
    return list(ReminderMessage.objects.order_by("id").values_list("status", "attempts", "sent_at"))


@pytest.mark.django_db(transaction=True)
def test_worker_delivers_to_smtp_and_survives_smtp_down(worker):
    today = validity.today()
    due = [make_token(today=today, days_left=d, contacts=2).token for d in (30, 12)]
    make_token(today=today, days_left=120)
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=worker["port"])

    # SMTP down: the sweep queues, delivery fails, rows stay pending with their attempts counted.
    tasks.sweep_reminders.apply_async(kwargs={"today": today.isoformat()}, connection=worker["conn"])
    # Attempts are counted when a row is claimed (status `sending`): wait until each failure is settled back to pending.
    wait_for(
        lambda: len(states()) == 4 and all(s == ReminderStatus.PENDING and a >= 1 for s, a, _ in states()),
        what="failed attempts\n" + worker["log"].read_text(errors="replace"),
    )
    assert all(s == ReminderStatus.PENDING and sent_at is None for s, _, sent_at in states())
    assert "Connection refused" in ReminderMessage.objects.first().last_error

    controller.start()
    try:
        time.sleep(1.2)  # the 1-second backoff of this worker
        tasks.deliver_reminders.apply_async(connection=worker["conn"])
        wait_for(
            lambda: all(s == ReminderStatus.SENT for s, _, _ in states()),
            what="sent\n" + worker["log"].read_text(errors="replace"),
        )
        # Repeats are harmless: another sweep and another delivery send nothing more.
        tasks.sweep_reminders.apply_async(kwargs={"today": today.isoformat()}, connection=worker["conn"])
        tasks.deliver_reminders.apply_async(connection=worker["conn"])
        time.sleep(3)
    finally:
        with contextlib.suppress(Exception):
            controller.stop()

    assert len(sink.messages) == 4 and Reminder.objects.count() == 2
    assert set(Reminder.objects.values_list("status", flat=True)) == {ReminderStatus.SENT}
    by_token: dict[str, list] = {}
    for rcpt, message in sink.messages:
        assert len(rcpt) == 1 and message["To"] == rcpt[0] and message["Cc"] is None
        by_token.setdefault(message["X-Token-Id"], []).append((rcpt[0], message))
    for token in due:
        received = by_token[str(token.public_id)]
        assert sorted(rcpt for rcpt, _ in received) == sorted(c.email for c in token.contacts.all())
        rcpt, message = received[0]
        assert message["X-Reminder-Route"] == "api_gouv"
        assert message["X-Reminder-Threshold"] in {"30", "15"}
        assert message.get_body(("plain",)) and message.get_body(("html",))
        assert (
            f"https://jetons.example.gouv.fr/jetons/{token.public_id}/renouveler/"
            in message.get_body(("plain",)).get_content()
        )
    assert {m.message_id for m in ReminderMessage.objects.all()} == {
        m["Message-ID"] for _, m in sink.messages
    }

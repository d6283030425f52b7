"""Three sweeps at once on PostgreSQL, each on its own connection: every reminder is queued once, and each of its
messages (one per recipient) sent once, by three deliveries at once."""

import threading

import pytest
import time_machine
from django.core import mail
from django.db import connection, connections

from notifications import delivery, sweep
from notifications.models import Reminder, ReminderMessage

from .conftest import TODAY, at, make_token


@pytest.mark.django_db(transaction=True)
def test_parallel_sweeps_and_deliveries_queue_and_send_each_reminder_once():
    assert connection.vendor == "postgresql"
    with time_machine.travel(at(TODAY), tick=False):
        for i in range(60):
            make_token(today=TODAY, days_left=1 + i % 90, contacts=1 + i % 2)
        barrier = threading.Barrier(3)
        queued, sent, errors = [], [], []

        def work():
            try:
                barrier.wait()
                queued.append(sweep.reminders_sweep(today=TODAY, batch_size=7).queued)
                barrier.wait()
                sent.append(delivery.reminders_deliver(batch_size=5).sent)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors
    assert sum(queued) == 60 and Reminder.objects.count() == 60 and ReminderMessage.objects.count() == 90
    assert sum(sent) == 90
    assert len(mail.outbox) == 90
    keys = {(m.extra_headers["X-Token-Id"], *m.to) for m in mail.outbox}
    assert len(keys) == 90 and len({token for token, _ in keys}) == 60
    assert set(Reminder.objects.values_list("status", flat=True)) == {"sent"}

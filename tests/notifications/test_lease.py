"""Delivery claims messages under a lease: each outcome is recorded right after its send, a crashed worker's claim is
taken over once its lease has expired, a live claim is never touched; the ledger follows its messages."""

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend

from notifications import delivery, sweep
from notifications.models import Reminder, ReminderMessage, ReminderStatus

from .conftest import TODAY, at


class Crash(BaseException):
    """A SIGKILL stand-in: nothing in delivery catches it."""


class CrashingBackend(LocmemBackend):
    """Accepts `crash_after` messages, then the process 'dies' on the next send."""

    crash_after = 0

    def send_messages(self, messages):
        if len(mail.outbox) >= CrashingBackend.crash_after:
            raise Crash
        return super().send_messages(messages)


def later(seconds: float):
    return time_machine.travel(at(TODAY) + dt.timedelta(seconds=seconds), tick=False)


def statuses() -> list[str]:
    return list(ReminderMessage.objects.order_by("id").values_list("status", flat=True))


def test_live_lease_is_left_alone_and_an_expired_one_is_sent_once(token_factory, today, settings):
    settings.REMINDER_LEASE_SECONDS = 60
    token_factory(30)
    sweep.reminders_sweep(today=today)
    (claimed,) = delivery.reminder_messages_claim(worker="dead-worker", batch_size=10)  # then the worker dies
    assert claimed.status == ReminderStatus.SENDING and claimed.attempts == 1
    assert delivery.reminders_deliver().sent == 0  # the lease still runs: not ours
    assert mail.outbox == [] and statuses() == ["sending"]
    assert sweep.reminders_sweep(today=today).queued == 0  # `sending` blocks the rule like pending/sent
    with later(59):
        assert delivery.reminders_deliver().sent == 0
    with later(61):
        assert delivery.reminders_deliver().sent == 1
        assert delivery.reminders_deliver().sent == 0
    assert len(mail.outbox) == 1
    message = ReminderMessage.objects.get()
    assert message.status == ReminderStatus.SENT and message.attempts == 2 and message.lease_until is None
    assert message.claimed_by != "dead-worker"
    assert Reminder.objects.get().status == ReminderStatus.SENT


def test_a_late_outcome_of_a_taken_over_claim_is_ignored(token_factory, today):
    token_factory(30)
    sweep.reminders_sweep(today=today)
    (mine,) = delivery.reminder_messages_claim(worker="slow", batch_size=1)
    ReminderMessage.objects.update(status=ReminderStatus.SENT, claimed_by="other")
    assert not delivery.OUTBOX.settle(mine.pk, worker="slow", status=ReminderStatus.PENDING)
    assert statuses() == ["sent"]


@pytest.mark.parametrize("crash_after", [0, 3])
def test_a_crash_after_k_sends_leaves_exactly_the_unsent_rows_to_claim(
    token_factory, today, settings, crash_after
):
    settings.EMAIL_BACKEND = f"{__name__}.CrashingBackend"
    CrashingBackend.crash_after = crash_after
    for _ in range(5):
        token_factory(30)
    sweep.reminders_sweep(today=today)
    with pytest.raises(Crash):
        delivery.reminders_deliver()  # one batch of 5: dies on message crash_after + 1
    assert len(mail.outbox) == crash_after
    assert statuses() == ["sent"] * crash_after + ["sending"] * (5 - crash_after)
    sent = {
        str(p)
        for p in ReminderMessage.objects.filter(status="sent").values_list(
            "reminder__token__public_id", flat=True
        )
    }
    assert sent == {m.extra_headers["X-Token-Id"] for m in mail.outbox}  # the rows sent are those marked sent

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with later(settings.REMINDER_LEASE_SECONDS + 1):
        claimable = delivery.reminder_messages_claim(worker="next", batch_size=100)
        assert len(claimable) == 5 - crash_after
        delivery.OUTBOX.release([m.pk for m in claimable], worker="next")
        assert delivery.reminders_deliver().sent == 5 - crash_after
    assert statuses() == ["sent"] * 5
    tokens = [m.extra_headers["X-Token-Id"] for m in mail.outbox]
    assert len(tokens) == len(set(tokens)) == 5  # none lost, none twice
    assert set(Reminder.objects.values_list("status", flat=True)) == {"sent"}


def test_two_claims_never_share_a_row(token_factory, today):
    for _ in range(5):
        token_factory(30)
    sweep.reminders_sweep(today=today)
    first = delivery.reminder_messages_claim(worker="a", batch_size=2)
    second = delivery.reminder_messages_claim(worker="b", batch_size=10)
    assert len(first) == 2 and len(second) == 3
    assert not {r.pk for r in first} & {r.pk for r in second}
    assert delivery.reminder_messages_claim(worker="c", batch_size=10) == []


def test_released_rows_are_pending_again_with_their_attempt_uncounted(token_factory, today):
    token_factory(30)
    sweep.reminders_sweep(today=today)
    claimed = delivery.reminder_messages_claim(worker="a", batch_size=10)
    delivery.OUTBOX.release([m.pk for m in claimed], worker="a")
    message = ReminderMessage.objects.get()
    assert message.status == ReminderStatus.PENDING and message.attempts == 0 and message.lease_until is None


def test_a_reminder_left_unsettled_by_a_dead_worker_is_settled_by_the_next_run(
    token_factory, today, settings
):
    settings.EMAIL_BACKEND = f"{__name__}.CrashingBackend"
    CrashingBackend.crash_after = 2
    token_factory(30, contacts=2)
    token_factory(30)
    sweep.reminders_sweep(today=today)
    with pytest.raises(Crash):
        delivery.reminders_deliver()  # the first reminder's two messages are sent; it dies before settling it
    assert statuses() == ["sent", "sent", "sending"]
    assert list(Reminder.objects.order_by("id").values_list("status", flat=True)) == ["pending", "pending"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert delivery.reminders_deliver().sent == 0  # the third message's lease still runs
    assert list(Reminder.objects.order_by("id").values_list("status", flat=True)) == ["sent", "pending"]
    with later(settings.REMINDER_LEASE_SECONDS + 1):
        assert delivery.reminders_deliver().sent == 1
    assert set(Reminder.objects.values_list("status", flat=True)) == {"sent"}
    assert len(mail.outbox) == 3


def test_each_message_is_sent_once_across_repeated_deliveries(token_factory, today):
    for contacts in (1, 2, 3):
        token_factory(30, contacts=contacts)
    sweep.reminders_sweep(today=today)
    assert delivery.reminders_deliver(batch_size=2).sent == 6
    for _ in range(3):
        sweep.reminders_sweep(today=today)
        assert delivery.reminders_deliver().sent == 0
    keys = [(m.extra_headers["X-Token-Id"], m.to[0]) for m in mail.outbox]
    assert len(keys) == len(set(keys)) == 6


def test_a_message_resent_after_a_crash_keeps_its_message_id(token_factory, today, settings):
    settings.EMAIL_BACKEND = f"{__name__}.CrashingBackend"
    CrashingBackend.crash_after = 1
    token_factory(30, contacts=2)
    sweep.reminders_sweep(today=today)
    with pytest.raises(Crash):
        delivery.reminders_deliver()
    # The first message went out but, as if the worker died before recording it, it is claimed again.
    first = ReminderMessage.objects.order_by("id").first()
    ReminderMessage.objects.filter(pk=first.pk).update(
        status=ReminderStatus.SENDING, sent_at=None, lease_until=at(TODAY)
    )
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with later(settings.REMINDER_LEASE_SECONDS + 1):
        assert delivery.reminders_deliver().sent == 2
    ids = [m.extra_headers["Message-ID"] for m in mail.outbox]
    assert len(ids) == 3 and ids[0] == ids[1] != ids[2]  # the re-sent one is recognisably the same message
    assert set(ReminderMessage.objects.values_list("message_id", flat=True)) == set(ids)

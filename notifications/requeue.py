"""Admin actions on reminders: failed messages back in the outbox."""

import datetime as dt
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from .models import Reminder, ReminderMessage, ReminderStatus
from .recipients import recipients_with_fallback
from .sweep import contacts_by_token


def _locked(reminder_ids: Iterable[int]) -> list[Reminder]:
    """The ledger rows, locked in id order (as reminders_settle locks them: no deadlock between the two)."""
    return list(Reminder.objects.filter(pk__in=set(reminder_ids)).select_for_update().order_by("pk"))


def _requeue(reminders: list[Reminder], failed, by, now: dt.datetime) -> int:
    """Put the `failed` messages back in the outbox, due now, with a fresh attempt count; reopen their reminders."""
    note = f"remis en file par {by}" if by else "remis en file"
    count = failed.requeue(note=note)
    reopened = ReminderMessage.objects.filter(reminder_id=OuterRef("pk"), status=ReminderStatus.PENDING)
    Reminder.objects.filter(pk__in=[r.pk for r in reminders], status=ReminderStatus.FAILED).filter(
        Exists(reopened)
    ).update(status=ReminderStatus.PENDING, last_error=note, updated_at=now)
    if count:
        from .tasks import deliver_reminders

        transaction.on_commit(deliver_reminders.delay)
    return count


@transaction.atomic
def reminders_requeue(*, reminder_ids: Iterable[int], by=None) -> int:
    """Every failed message of these reminders back in the outbox; a failed reminder that never had a message (no
    contact and no ADMINS when it was queued) gets its recipients now. Returns the number of messages queued."""
    now = timezone.now()
    reminders = _locked(reminder_ids)
    _add_missing_messages([r for r in reminders if r.status == ReminderStatus.FAILED], now)
    return _requeue(reminders, ReminderMessage.objects.filter(reminder__in=reminders), by, now)


@transaction.atomic
def reminder_messages_requeue(*, message_ids: Iterable[int], by=None) -> int:
    """These failed messages back in the outbox. Returns the number of messages queued."""
    now = timezone.now()
    message_ids = list(message_ids)
    reminders = _locked(
        ReminderMessage.objects.filter(pk__in=message_ids).values_list("reminder_id", flat=True)
    )
    return _requeue(
        reminders, ReminderMessage.objects.filter(pk__in=message_ids, reminder__in=reminders), by, now
    )


def _add_missing_messages(reminders: list[Reminder], now: dt.datetime) -> None:
    """Failed (messages to be requeued) for reminders that have none, to the recipients the token has now."""
    with_messages = set(
        ReminderMessage.objects.filter(reminder__in=reminders).values_list("reminder_id", flat=True)
    )
    bare = [r for r in reminders if r.pk not in with_messages]
    if not bare:
        return
    contacts = contacts_by_token([r.token_id for r in bare])
    new = []
    for reminder in bare:
        recipients, to_admins = recipients_with_fallback(contacts.get(reminder.token_id, ()))
        Reminder.objects.filter(pk=reminder.pk).update(recipients=recipients, updated_at=now)
        new += [
            ReminderMessage(reminder=reminder, email=e, to_admins=to_admins, status=ReminderStatus.FAILED)
            for e in recipients
        ]
    ReminderMessage.objects.bulk_create(new, ignore_conflicts=True)

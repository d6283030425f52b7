"""What every outbox of emails shares (reminders, evolution notices): the retry backoff, the lease margin, one mail
connection per delivery run and the one way a message is sent on it. One definition each."""

import contextlib
import datetime as dt

from django.conf import settings
from django.core.mail import get_connection

from tokenmgr import outbox


def retry_delay(attempts: int) -> dt.timedelta:
    """Exponential backoff after `attempts` failures: base, base·factor, base·factor², … capped."""
    return outbox.backoff(
        attempts,
        base=settings.REMINDER_RETRY_BASE_SECONDS,
        factor=settings.REMINDER_RETRY_FACTOR,
        cap=settings.REMINDER_RETRY_MAX_SECONDS,
    )


def lease_margin() -> dt.timedelta:
    """No send starts this close to the end of its message's lease: a send never outlives its claim."""
    return dt.timedelta(seconds=settings.REMINDER_LEASE_SECONDS / 4)


def send(conn, message) -> None:
    """Send one message on the run's open connection (public API: send_messages); raises when it was not
    accepted."""
    if not conn.send_messages([message]):
        raise RuntimeError("the mail backend accepted no message")


class Mailer:
    """A delivery run's one mail connection, opened on first use and reopened after a failed send."""

    def __init__(self, conn=None):
        self.conn = conn or get_connection(timeout=settings.EMAIL_TIMEOUT or lease_margin().total_seconds())
        self.is_open = False
        self.ours = False

    def ensure_open(self) -> str:
        """'' once open, or the error that kept it closed."""
        if self.is_open:
            return ""
        try:
            self.ours = self.conn.open() is not False  # False: it was already open (not ours to close)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        self.is_open = True
        return ""

    def close(self) -> None:
        if self.is_open and self.ours:
            with contextlib.suppress(Exception):  # a failed QUIT does not undo what was accepted
                self.conn.close()
        self.is_open = self.ours = False

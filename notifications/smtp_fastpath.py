"""The one private mail API of the reminders, isolated here: a reminder's own MIME bytes on the open smtplib
connection of Django's SMTP backend, instead of send_messages.

send_messages serialises each message with the email package (message().as_bytes(): about 1.0 ms per reminder);
emails.ReminderMessage.wire_bytes writes the same bytes directly (about 0.08 ms, tested equal). Measured with
`BENCH_REMINDER_TOKENS=100000 scripts/with_services.py -- bench/run_all.py reminders` (4 delivery processes, the
machine shared with other work). The reminders' delivery target is
300 messages/s on the 2-core bench machine, which the public path leaves without margin.

Measured 2026-12-06, the same code but for this path, 1,045 messages, load average 15 (machine shared):
send_messages 6.47 ms of sender CPU per message (20.9 messages/s); this path 4.33 ms (50.3 messages/s).

tests/notifications/test_smtp_fastpath.py fails when Django changes underneath: it sends one message both ways
through a real SMTP backend connected to a recording server and compares what the server received.
"""

from django.conf import settings
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend

from . import emails


def send(conn, message: emails.ReminderMessage) -> bool:
    """Send `message` on `conn`'s open SMTP connection as wire_bytes(); False (nothing sent) when `conn` is not
    Django's SMTP backend with an open connection, so that the caller uses send_messages. Raises what smtplib
    raises (refused recipients, broken connection)."""
    smtp = getattr(conn, "connection", None) if isinstance(conn, SMTPBackend) else None
    if smtp is None:
        return False
    encoding = message.encoding or settings.DEFAULT_CHARSET
    smtp.sendmail(
        emails.header_address(message.from_email, encoding),
        [emails.header_address(addr, encoding) for addr in message.recipients()],
        message.wire_bytes(),
    )
    return True

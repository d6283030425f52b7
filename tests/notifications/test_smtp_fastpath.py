"""The SMTP fast path (notifications.smtp_fastpath) sends what Django's own send_messages sends: checked against a
real SMTP server, so that a change of Django's SMTP backend underneath fails here."""

import dataclasses
import email
import email.policy
import socket

import pytest
from aiosmtpd.controller import Controller
from django.core.mail import get_connection

from notifications import emails, smtp_fastpath


class Recorder:
    def __init__(self):
        self.received = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server():
    recorder = Recorder()
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def content(raw: bytes):
    message = email.message_from_bytes(raw, policy=email.policy.default)
    headers = sorted(
        (k, " ".join(str(v).split())) for k, v in message.items() if k not in ("Content-Type", "Date")
    )
    return headers, [(p.get_content_type(), p.get_content()) for p in message.iter_parts()]


def test_fast_path_and_send_messages_deliver_the_same_message(smtp_server, settings):
    port, recorder = smtp_server
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "Équipe <noreply@example.org>"
    data = dataclasses.replace(emails.sample("api_gouv", 30), recipient="élise@example.org")
    conn = get_connection(host="127.0.0.1", port=port, timeout=5)
    assert not smtp_fastpath.send(conn, emails.build_message(data, conn, msgid="<a@x>"))  # not open: not sent
    conn.open()
    try:
        assert smtp_fastpath.send(conn, emails.build_message(data, conn, msgid="<a@x>"))
        assert conn.send_messages([emails.build_message(data, conn, msgid="<a@x>")]) == 1
    finally:
        conn.close()
    (fast_from, fast_rcpt, fast_raw), (django_from, django_rcpt, django_raw) = recorder.received
    assert (fast_from, fast_rcpt) == (django_from, django_rcpt)
    assert content(fast_raw) == content(django_raw)


def test_other_backends_are_left_to_send_messages(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    conn = get_connection()
    assert not smtp_fastpath.send(conn, emails.build_message(emails.sample("api_gouv", 30), conn))

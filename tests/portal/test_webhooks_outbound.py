"""Outbound webhook safety: pinned, checked destinations; one deadline per attempt; no lock across the network."""

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import trustme
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import formats, timezone

from notifications import webhooks
from notifications.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.factories import ClientFactory
from tokenmgr import outbox

Cause = WebhookAttempt.Cause
PUBLIC = "93.184.216.34"


# ------------------------------------------------------------------------------------------------ helpers
class _Resolver:
    """Stands in for DNS: answers `first` to the first lookup, `then` to every later one (a rebinding name)."""

    def __init__(self, first: str, then: str | None = None):
        self.answers = [first, then or first]
        self.calls = []

    def __call__(self, host, port, *args, **kwargs):
        self.calls.append(host)
        address = self.answers[0] if len(self.calls) == 1 else self.answers[1]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]


class _Receiver:
    """A real HTTP server on 127.0.0.1 recording requests (headers, body), answering `code`."""

    def __init__(self, code=200):
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _RawServer:
    """A TCP server on 127.0.0.1 running `behaviour(conn)` for each connection (optionally TLS-wrapped)."""

    def __init__(self, behaviour, tls: ssl.SSLContext | None = None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.behaviour, self.tls = behaviour, tls
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.behaviour(conn, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


def _read_request(conn):
    """Head and body (unread bytes at close would reset the connection before the client reads the answer)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            return
        body += chunk


def _slow_drip(conn, stop):
    """Reads the request, then answers one byte every 0.5 s, for ever (each read alone never times out)."""
    _read_request(conn)
    for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Drip: " + b"d" * 1000:
        if stop.wait(0.5):
            return
        conn.sendall(bytes([byte]))


def _answer_204(conn, stop):
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")


def _silent(conn, stop):
    stop.wait(10)


@pytest.fixture
def loopback(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = True


@pytest.fixture
def receiver(loopback):
    r = _Receiver()
    yield r
    r.close()


@pytest.fixture
def ca():
    return trustme.CA()


@pytest.fixture
def server_tls(ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def trust_test_ca(ca, monkeypatch):
    def context():
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        return ctx

    monkeypatch.setattr(webhooks, "_tls_context", context)


def _delivery(client, url: str) -> WebhookDelivery:
    WebhookEndpoint.objects.create(client=client, url=url, secret="whsec_test")
    event = webhooks.webhook_emit(client=client, event_type="ping", payload={"message": "ping"})
    return event.deliveries.get()


# ------------------------------------------------------------------------------------------------ address policy
@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "169.254.1.1",
        "100.64.0.1",
        "100.100.100.200",  # Alibaba metadata
        "192.0.0.192",  # Oracle metadata
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "fec0::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of the metadata address
        "2001:0:c000:201::f5ff:fffe",  # Teredo, client 10.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "::a00:1",  # IPv4-compatible
    ],
)
def test_non_public_addresses_are_refused(address):
    assert webhooks.address_refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_accepted(address):
    assert webhooks.address_refusal(ipaddress.ip_address(address)) == ""


@pytest.mark.parametrize("address", ["10.0.0.5", "169.254.169.254", "127.0.0.1", "::ffff:192.168.0.1"])
def test_a_name_resolving_to_a_refused_address_is_never_connected(address, monkeypatch, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    monkeypatch.setattr(socket, "getaddrinfo", _Resolver(address))
    connected = []
    monkeypatch.setattr(webhooks, "_connect", lambda *a: connected.append(a))
    with pytest.raises(webhooks.DeliveryError) as exc:
        webhooks.post("https://hooks.example.fr/in", b"{}", {}, timeout=2)
    assert exc.value.cause == Cause.ADDRESS and address in str(exc.value)
    assert connected == []


def test_every_resolved_address_is_checked(monkeypatch, settings):
    """One public and one private answer: refused (a client could otherwise be sent to the private one)."""
    settings.WEBHOOK_ALLOW_LOOPBACK = False

    def two_answers(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two_answers)
    with pytest.raises(webhooks.DeliveryError) as exc:
        webhooks.destination("https://hooks.example.fr/in", webhooks._Deadline(2))
    assert exc.value.cause == Cause.ADDRESS and "10.0.0.7" in str(exc.value)


# ------------------------------------------------------------------------------------------------ DNS rebinding
def test_rebinding_name_connects_to_the_checked_address_only(monkeypatch, settings):
    """Public on the check, private on any later lookup: the socket goes to the public address it checked."""
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    resolver = _Resolver(PUBLIC, then="10.0.0.5")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    connected = []

    def record(addresses, port, deadline):
        connected.append((list(addresses), port))
        raise ConnectionRefusedError("test")

    monkeypatch.setattr(webhooks, "_connect", record)
    with pytest.raises(webhooks.DeliveryError) as exc:
        webhooks.post("https://hooks.example.fr/in", b"{}", {}, timeout=2)
    assert exc.value.cause == Cause.REFUSED
    assert connected == [([PUBLIC], 443)]
    assert resolver.calls == ["hooks.example.fr"]  # resolved once


def test_rebinding_end_to_end_reaches_the_checked_receiver(own_client, receiver, monkeypatch, _no_broker):
    """Checked answer: the local receiver; later answers: an unroutable private address. Delivery reaches the
    receiver, and the Host header keeps the URL's name."""
    resolver = _Resolver("127.0.0.1", then="10.255.255.1")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    delivery = _delivery(own_client, f"http://hooks.rebind.test:{receiver.port}/hook")
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk) == "delivered"
    assert len(resolver.calls) == 1
    headers, _ = receiver.requests[0]
    assert headers["Host"] == f"hooks.rebind.test:{receiver.port}"


def test_rebinding_to_private_on_the_check_is_refused(own_client, receiver, monkeypatch, logged, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    monkeypatch.setattr(socket, "getaddrinfo", _Resolver("10.0.0.5", then=PUBLIC))
    delivery = _delivery(own_client, "https://hooks.example.fr/in")
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk) == "pending"
    attempt = WebhookAttempt.objects.get()
    assert attempt.cause == Cause.ADDRESS and "10.0.0.5" in attempt.error  # the detail, for staff
    assert receiver.requests == []
    page = logged.get(reverse("portal_webhook", args=[delivery.endpoint_id])).content.decode()
    assert "adresse refusée" in page
    assert "10.0.0.5" not in page and "resolves" not in page


# ------------------------------------------------------------------------------------------------ ports
def test_port_policy_at_registration(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    for bad in [
        "https://hooks.example.fr:8080/in",
        "https://hooks.example.fr:22/in",
        "https://hooks.example.fr:0x1/",
    ]:
        with pytest.raises(ValidationError):
            webhooks.validate_webhook_url(bad)
    webhooks.validate_webhook_url("https://hooks.example.fr:8443/in")
    webhooks.validate_webhook_url("https://hooks.example.fr:443/in")
    settings.WEBHOOK_ALLOWED_PORTS = [443, 9443]
    webhooks.validate_webhook_url("https://hooks.example.fr:9443/in")
    with pytest.raises(ValidationError):
        webhooks.validate_webhook_url("https://hooks.example.fr:8443/in")


def test_port_policy_at_delivery(monkeypatch, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    monkeypatch.setattr(socket, "getaddrinfo", _Resolver(PUBLIC))
    connected = []
    monkeypatch.setattr(webhooks, "_connect", lambda *a: connected.append(a))
    with pytest.raises(webhooks.DeliveryError) as exc:
        webhooks.post("https://hooks.example.fr:6379/in", b"{}", {}, timeout=2)
    assert exc.value.cause == Cause.PORT and connected == []
    with pytest.raises(webhooks.DeliveryError) as exc:
        webhooks.post("http://hooks.example.fr/in", b"{}", {}, timeout=2)  # plain http, port 80
    assert exc.value.cause == Cause.ADDRESS and connected == []


# ------------------------------------------------------------------------------------------------ one deadline
def test_slow_drip_over_http_gives_up_at_the_deadline(loopback):
    server = _RawServer(_slow_drip)
    try:
        started = time.monotonic()
        with pytest.raises(webhooks.DeliveryError) as exc:
            webhooks.post(f"http://127.0.0.1:{server.port}/hook", b"{}", {}, timeout=1)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert exc.value.cause == Cause.TIMEOUT
    assert 0.9 <= elapsed < 1.5


def test_slow_drip_over_https_gives_up_at_the_deadline(loopback, server_tls, trust_test_ca, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _Resolver("127.0.0.1"))
    server = _RawServer(_slow_drip, tls=server_tls)
    try:
        started = time.monotonic()
        with pytest.raises(webhooks.DeliveryError) as exc:
            webhooks.post(f"https://localhost:{server.port}/hook", b"{}", {}, timeout=1)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert exc.value.cause == Cause.TIMEOUT
    assert 0.9 <= elapsed < 1.5


def test_silent_tls_handshake_gives_up_at_the_deadline(loopback, trust_test_ca, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _Resolver("127.0.0.1"))
    server = _RawServer(_silent)
    try:
        started = time.monotonic()
        with pytest.raises(webhooks.DeliveryError) as exc:
            webhooks.post(f"https://localhost:{server.port}/hook", b"{}", {}, timeout=1)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert exc.value.cause == Cause.TIMEOUT and elapsed < 1.5


def test_slow_dns_counts_in_the_deadline(monkeypatch):
    def slow_lookup(*args, **kwargs):
        time.sleep(3)
        return _Resolver(PUBLIC)(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    started = time.monotonic()
    with pytest.raises(webhooks.DeliveryError) as exc:
        webhooks.post("https://hooks.example.fr/in", b"{}", {}, timeout=1)
    assert exc.value.cause == Cause.TIMEOUT and time.monotonic() - started < 1.5


def test_unexpected_error_is_a_failed_attempt_not_a_stuck_claim(own_client, monkeypatch, _no_broker):
    delivery = _delivery(own_client, "https://hooks.example.fr/in")

    def broken(event):
        raise KeyError("bug")

    monkeypatch.setattr(webhooks, "event_body", broken)
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk) == "pending"
    delivery.refresh_from_db()
    assert delivery.lease_until is None and delivery.next_attempt_at > timezone.now()
    assert WebhookAttempt.objects.get().cause == Cause.NETWORK


def test_https_to_the_pinned_address_verifies_the_host_name(loopback, server_tls, trust_test_ca, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _Resolver("127.0.0.1"))
    server = _RawServer(_answer_204, tls=server_tls)
    try:
        assert webhooks.post(f"https://localhost:{server.port}/hook", b"{}", {}, timeout=3) == 204
        # same address, another name: the certificate (issued for localhost) does not match
        with pytest.raises(webhooks.DeliveryError) as exc:
            webhooks.post(f"https://hooks.other.test:{server.port}/hook", b"{}", {}, timeout=3)
        assert exc.value.cause == Cause.CERTIFICATE
    finally:
        server.close()


def test_untrusted_certificate_is_refused(loopback, server_tls, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _Resolver("127.0.0.1"))
    server = _RawServer(_answer_204, tls=server_tls)
    try:
        with pytest.raises(webhooks.DeliveryError) as exc:
            webhooks.post(f"https://localhost:{server.port}/hook", b"{}", {}, timeout=3)
    finally:
        server.close()
    assert exc.value.cause == Cause.CERTIFICATE


# ------------------------------------------------------------------------------------------------ outbox and lease
@pytest.mark.django_db(transaction=True)
def test_no_transaction_nor_row_lock_during_the_request(monkeypatch, _no_broker, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    delivery = _delivery(ClientFactory(), "https://hooks.example.fr/in")
    seen = {}

    def probe_lock():
        try:
            with transaction.atomic():
                locked = WebhookDelivery.objects.select_for_update(nowait=True).get(pk=delivery.pk)
                seen["status"] = locked.status
                seen["lease"] = locked.lease_until
        except DatabaseError as exc:  # the row is locked by someone
            seen["lock_error"] = exc
        finally:
            connection.close()

    def fake_post(url, body, headers, *, timeout):
        seen["in_atomic_block"] = connection.in_atomic_block
        thread = threading.Thread(target=probe_lock)
        thread.start()
        thread.join()
        return 200

    monkeypatch.setattr(webhooks, "post", fake_post)
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk) == "delivered"
    assert seen["in_atomic_block"] is False
    assert "lock_error" not in seen
    assert seen["status"] == "sending" and seen["lease"] is not None  # claimed, under a lease, not locked


def test_a_crashed_worker_s_claim_is_taken_over_after_its_lease(own_client, receiver, _no_broker):
    delivery = _delivery(own_client, f"http://127.0.0.1:{receiver.port}/hook")
    now = timezone.now()
    # a worker claims the row, then dies before settling
    claimed = webhooks.OUTBOX.claim(worker="dead-worker", limit=1, now=now, pks=[delivery.pk])
    assert claimed == [delivery.pk]
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, now=now) is None  # leased: not taken
    assert delivery.pk not in webhooks.deliveries_due(now=now)
    assert receiver.requests == []
    after_lease = now + dt.timedelta(seconds=webhooks.lease_seconds() + 1)
    assert delivery.pk in webhooks.deliveries_due(now=after_lease + dt.timedelta(minutes=1))
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, now=after_lease) == "delivered"
    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.lease_until is None
    # the dead worker, were it to come back, settles nothing
    assert not webhooks.OUTBOX.settle(delivery.pk, worker="dead-worker", status="failed")
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


def test_a_row_that_keeps_killing_its_workers_fails(own_client, settings, _no_broker):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    delivery = _delivery(own_client, "https://hooks.example.fr/in")
    now = timezone.now()
    for i in range(2):
        at = now + i * dt.timedelta(seconds=webhooks.lease_seconds() + 1)
        assert webhooks.OUTBOX.claim(worker=f"w{i}", limit=1, now=at)
    later = now + 3 * dt.timedelta(seconds=webhooks.lease_seconds() + 1)
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, now=later) == "failed"
    assert WebhookAttempt.objects.get().cause == Cause.INTERRUPTED


def test_backoff_is_one_function():
    assert [webhooks.retry_delay(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert webhooks.retry_delay(30).total_seconds() == webhooks.MAX_BACKOFF_SECONDS
    assert outbox.backoff(3, base=60, factor=5, cap=6 * 3600) == dt.timedelta(seconds=1500)


# ------------------------------------------------------------------------------------------------ queue
def test_webhook_tasks_have_their_own_queue_and_time_limits():
    from notifications import tasks
    from tokenmgr.celery import app

    router = app.amqp.router
    for name in (
        "notifications.tasks.webhook_deliver",
        "notifications.tasks.webhooks_retry_due",
        "notifications.tasks.webhooks_emit_expired",
    ):
        assert router.route({}, name)["queue"].name == "webhooks"
    assert router.route({}, "notifications.deliver_reminders")["queue"].name == "celery"
    soft, hard = webhooks.task_time_limits()
    assert tasks.webhook_deliver.soft_time_limit == soft and tasks.webhook_deliver.time_limit == hard
    assert webhooks.lease_seconds() > hard  # a live worker never loses its claim


def test_workers_consume_the_webhook_queue():
    from scripts import run_all
    from tests.e2e import topology

    assert "celery,webhooks" in run_all.PROCESSES["worker"]
    worker = topology.Topology.start_worker.__code__.co_consts
    assert "celery,webhooks" in worker


# ------------------------------------------------------------------------------------------------ portal pages
def test_ping_is_rate_limited_per_endpoint_and_per_user(logged, own_client, settings, _no_broker):
    settings.RATELIMIT_WEBHOOK_PING_PER_ENDPOINT = 2
    settings.RATELIMIT_WEBHOOK_PING_PER_USER = 4  # refused pings count too
    first = WebhookEndpoint.objects.create(client=own_client, url="https://x.example.fr", secret="s")
    second = WebhookEndpoint.objects.create(client=own_client, url="https://y.example.fr", secret="s")

    def ping(endpoint):
        return logged.post(
            reverse("portal_webhook_action", args=[endpoint.pk]), {"action": "ping"}, follow=True
        )

    ping(first)
    ping(first)
    refused = ping(first).content.decode()
    assert "Trop d&#x27;événements de test" in refused or "Trop d'événements de test" in refused
    assert WebhookDelivery.objects.filter(endpoint=first).count() == 2
    ping(second)  # fourth ping of the user
    ping(second)  # fifth: over the user's limit
    assert WebhookDelivery.objects.filter(endpoint=second).count() == 1


def test_causes_are_in_plain_french_without_exception_text(logged, own_client):
    delivery = _delivery(own_client, "https://hooks.example.fr/in")
    now = timezone.now()
    for i, (code, cause, error) in enumerate(
        [
            (None, Cause.TIMEOUT, "TimeoutError: The read operation timed out"),
            (None, Cause.CERTIFICATE, "SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED]"),
            (None, Cause.REFUSED, "ConnectionRefusedError: [Errno 111] Connection refused"),
            (500, Cause.HTTP, ""),
        ]
    ):
        WebhookAttempt.objects.create(
            delivery=delivery, at=now - dt.timedelta(minutes=i), status_code=code, cause=cause, error=error
        )
    page = logged.get(reverse("portal_webhook", args=[delivery.endpoint_id])).content.decode()
    for label in ("délai dépassé", "certificat invalide", "connexion refusée", "réponse HTTP 500"):
        assert label in page
    for technical in ("TimeoutError", "CERTIFICATE_VERIFY_FAILED", "Errno", "SSL"):
        assert technical not in page


def test_next_retry_time_is_shown_for_pending_deliveries(logged, own_client):
    delivery = _delivery(own_client, "https://hooks.example.fr/in")
    when = timezone.now() + dt.timedelta(hours=2)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=when, attempts=1)
    page = logged.get(reverse("portal_webhook", args=[delivery.endpoint_id])).content.decode()
    shown = formats.date_format(timezone.localtime(when), "DATETIME_FORMAT")
    assert f"prochaine tentative le {shown}" in page
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="delivered", next_attempt_at=None)
    page = logged.get(reverse("portal_webhook", args=[delivery.endpoint_id])).content.decode()
    assert "prochaine tentative" not in page


def test_deleting_an_endpoint_keeps_its_history(logged, own_client, foreign):
    delivered = _delivery(own_client, "https://hooks.example.fr/in")
    WebhookDelivery.objects.filter(pk=delivered.pk).update(status="delivered", next_attempt_at=None)
    endpoint = delivered.endpoint
    event = webhooks.webhook_emit(client=own_client, event_type="ping", payload={})
    waiting = event.deliveries.get()
    action = reverse("portal_webhook_action", args=[endpoint.pk])

    logged.post(action, {"action": "delete"})  # not confirmed
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()

    response = logged.post(action, {"action": "delete", "confirm": "on"})
    assert response.status_code == 302 and response["Location"] == reverse("portal_webhooks")
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    delivered.refresh_from_db()
    waiting.refresh_from_db()
    assert delivered.endpoint_id is None and delivered.url == "https://hooks.example.fr/in"
    assert delivered.status == "delivered"
    assert waiting.status == "failed" and waiting.url == "https://hooks.example.fr/in"
    assert WebhookAttempt.objects.get(delivery=waiting).cause == Cause.DELETED
    assert "hooks.example.fr" not in logged.get(reverse("portal_webhooks")).content.decode()
    # an event emitted afterwards goes nowhere; a replay of history does not resurrect it
    assert webhooks.webhook_emit(client=own_client, event_type="ping", payload={}) is None
    webhooks.webhook_delivery_replay(delivery=delivered)
    delivered.refresh_from_db()
    assert delivered.status == "delivered"

    other = WebhookEndpoint.objects.create(
        client=foreign.token.client, url="https://z.example.fr", secret="s"
    )
    denied = logged.post(
        reverse("portal_webhook_action", args=[other.pk]), {"action": "delete", "confirm": "on"}
    )
    assert denied.status_code == 404 and WebhookEndpoint.objects.filter(pk=other.pk).exists()

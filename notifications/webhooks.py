"""Signed webhook events: emission (in the caller's transaction), delivery with bounded exponential backoff.

Receivers verify `X-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw request body with the endpoint's
signing secret, and deduplicate on the body's `id` (also in `X-Webhook-Id`): a retried or replayed event keeps its id.

Delivery is safe against the network it talks to: the host name is resolved once, every address is checked (no
private, loopback, link-local, multicast, reserved or cloud-metadata destination, nor one hidden in an IPv6 form),
and the connection goes to the very address that was checked, TLS verified against the host name; one deadline
bounds connect, handshake, send and read together. Deliveries are outbox rows claimed under a lease
(tokenmgr.outbox): no transaction or row lock is held while the request is in flight.
"""

import concurrent.futures
import datetime as dt
import hashlib
import hmac
import http.client
import io
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from tokenmgr import outbox
from tokens.models import Client, Token

from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

logger = logging.getLogger(__name__)

USER_AGENT = "tokenmgr-webhooks/1"
MAX_RESPONSE_BYTES = 2048  # of the body: read, then ignored
MAX_RESPONSE_HEAD_BYTES = 64 * 1024  # status line and headers: a longer answer is refused
MAX_BACKOFF_SECONDS = 6 * 3600
BACKOFF_FACTOR = 2
Cause = WebhookAttempt.Cause

# Cloud instance metadata services (AWS, ECS, GCP, Azure, Alibaba, Oracle): refused by name, whatever else applies.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
        "fd00:ec2::23",
    )
)
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


# ---------------------------------------------------------------------------------------------------------------
# Address and URL rules
# ---------------------------------------------------------------------------------------------------------------
def _embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries: IPv4-mapped, 6to4, Teredo (server and client), NAT64, compatible."""
    found = []
    if addr.ipv4_mapped is not None:
        found.append(addr.ipv4_mapped)
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    if addr in NAT64_PREFIX or (addr in IPV4_COMPATIBLE and int(addr) > 1):
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def address_refusal(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why a webhook may not connect to `addr` ('' when it may): only globally routable unicast destinations."""
    if addr in METADATA_ADDRESSES:
        return "cloud metadata service"
    if isinstance(addr, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(addr):
            reason = address_refusal(inner) or "IPv4 address embedded in IPv6"
            return f"{reason} ({inner} inside {addr})"
        if addr.is_site_local:
            return "site-local"
    for flag in (
        "is_unspecified",
        "is_loopback",
        "is_link_local",
        "is_multicast",
        "is_private",
        "is_reserved",
    ):
        if getattr(addr, flag):
            return flag.removeprefix("is_").replace("_", "-")
    if not addr.is_global:
        return "not globally routable"
    return ""


def _loopback_allowed(addr) -> bool:
    """Tests only (WEBHOOK_ALLOW_LOOPBACK): a local receiver."""
    return settings.WEBHOOK_ALLOW_LOOPBACK and addr.is_loopback


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _ports_text() -> str:
    return ", ".join(str(p) for p in settings.WEBHOOK_ALLOWED_PORTS)


def validate_webhook_url(url: str) -> None:
    """HTTPS only, no credentials, a real host name, an allowed port (WEBHOOK_ALLOWED_PORTS); http and any port on
    loopback only when WEBHOOK_ALLOW_LOOPBACK (tests). Addresses are checked again at each delivery."""
    parts = urlsplit(url or "")
    host = (parts.hostname or "").lower()
    if parts.username or parts.password or "@" in parts.netloc:
        raise ValidationError(_("L'URL ne doit pas contenir d'identifiants."), code="credentials")
    if not host:
        raise ValidationError(_("Saisissez une URL complète, par exemple https://exemple.fr/webhooks."))
    loopback_ok = settings.WEBHOOK_ALLOW_LOOPBACK and _is_loopback_host(host)
    if parts.scheme != "https" and not (loopback_ok and parts.scheme == "http"):
        raise ValidationError(_("L'URL doit commencer par https://."), code="https_required")
    if parts.fragment:
        raise ValidationError(_("L'URL ne doit pas contenir de fragment (#…)."), code="fragment")
    try:
        port = parts.port
    except ValueError:
        raise ValidationError(_("Le port de l'URL n'est pas valide."), code="port") from None
    if port is not None and not loopback_ok and port not in settings.WEBHOOK_ALLOWED_PORTS:
        raise ValidationError(
            _("Le port de l'URL doit être l'un de ceux-ci : %(ports)s.") % {"ports": _ports_text()},
            code="port",
        )
    if not loopback_ok:
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if "." not in host or host.endswith((".localhost", ".local", ".internal")):
                raise ValidationError(_("Le nom d'hôte doit être public."), code="host") from None
        else:
            if address_refusal(addr):
                raise ValidationError(_("L'adresse doit être publique."), code="host")


# ---------------------------------------------------------------------------------------------------------------
# One request under one deadline, to the address that was checked
# ---------------------------------------------------------------------------------------------------------------
class DeliveryError(Exception):
    """A failed attempt: `cause` is shown to the integrator (WebhookAttempt.Cause), the message to staff only."""

    def __init__(self, cause: str, detail: str):
        super().__init__(detail)
        self.cause = cause


class _Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("delivery deadline reached")
        return left


class _DeadlineReader(io.RawIOBase):
    """Reads of the response: each waits at most what is left of the deadline, and the total is bounded."""

    def __init__(self, sock: socket.socket, deadline: _Deadline, limit: int):
        super().__init__()
        # The socket's own raw file: it keeps the socket open until the response is closed (as http.client expects).
        self._raw = sock.makefile("rb", buffering=0)
        self._sock, self._deadline, self._left = sock, deadline, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._left <= 0:
            raise DeliveryError(Cause.INVALID_RESPONSE, "response head larger than the limit")
        self._sock.settimeout(self._deadline.remaining())
        count = self._raw.readinto(memoryview(buffer)[: self._left])
        self._left -= count or 0
        return count

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """The connected socket as http.client sees it: every send and read bounded by the deadline."""

    def __init__(self, sock: socket.socket, deadline: _Deadline):
        self._sock, self._deadline = sock, deadline

    def sendall(self, data) -> None:
        self._sock.settimeout(self._deadline.remaining())
        self._sock.sendall(data)

    def makefile(self, mode: str, *args, **kwargs):
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline, MAX_RESPONSE_HEAD_BYTES))

    def close(self) -> None:
        self._sock.close()


def _connect(addresses: list[str], port: int, deadline: _Deadline) -> socket.socket:
    """A TCP connection to the first of `addresses` (already checked) that answers; never resolves a name."""
    error: OSError = ConnectionRefusedError("no address")
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.remaining())
            sock.connect((address, port))
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


def _tls_context() -> ssl.SSLContext:
    """Certificate and host name verified against the system's trusted authorities."""
    return ssl.create_default_context()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """http.client to a fixed, checked address: the Host header (and TLS name) stay the URL's host."""

    def __init__(self, host: str, port: int, *, addresses: list[str], deadline: _Deadline):
        super().__init__(host, port)
        self._addresses, self._deadline = addresses, deadline

    def connect(self) -> None:
        sock = _connect(self._addresses, self.port, self._deadline)
        try:
            sock = self._secure(sock)
        except BaseException:
            sock.close()
            raise
        self.sock = _DeadlineSocket(sock, self._deadline)

    def _secure(self, sock: socket.socket) -> socket.socket:
        return sock


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = http.client.HTTPS_PORT

    def _secure(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(self._deadline.remaining())  # the handshake as a whole
        return _tls_context().wrap_socket(sock, server_hostname=self.host)


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    target: str  # path and query
    addresses: list[str]


# getaddrinfo cannot be interrupted: lookups run here, and a delivery stops waiting for one at its deadline.
_lookups = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


def _resolve(host: str, port: int, deadline: _Deadline) -> list[str]:
    """Every address of `host`, in the resolver's order, without duplicates (one lookup per attempt)."""
    lookup = _lookups.submit(
        socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    try:
        infos = lookup.result(timeout=deadline.remaining())
    except concurrent.futures.TimeoutError:
        raise TimeoutError(f"resolving {host!r}") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def destination(url: str, deadline: _Deadline) -> Destination:
    """Resolve the URL's host once and check every address and the port; raises DeliveryError when refused."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DeliveryError(Cause.PORT, f"invalid port in {url!r}") from None
    if parts.scheme not in ("https", "http") or not host:
        raise DeliveryError(Cause.ADDRESS, f"not an http(s) URL: {url!r}")
    try:
        addresses = _resolve(host, port, deadline)
    except (socket.gaierror, UnicodeError) as exc:
        raise DeliveryError(Cause.DNS, f"resolving {host!r}: {exc}") from None
    if not addresses:
        raise DeliveryError(Cause.DNS, f"{host!r} has no address")
    local_test = True
    for address in addresses:
        addr = ipaddress.ip_address(address.split("%", 1)[0])
        if _loopback_allowed(addr):
            continue
        local_test = False
        reason = address_refusal(addr)
        if reason:
            raise DeliveryError(Cause.ADDRESS, f"{host!r} resolves to {address}: {reason}")
    if not local_test:
        if parts.scheme != "https":
            raise DeliveryError(Cause.ADDRESS, f"plain http to {host!r}")
        if port not in settings.WEBHOOK_ALLOWED_PORTS:
            raise DeliveryError(Cause.PORT, f"port {port} not in WEBHOOK_ALLOWED_PORTS ({_ports_text()})")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(parts.scheme, host, port, target, addresses)


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> int:
    """POST `body` to `url` within `timeout` seconds in all; returns the HTTP status (a 3xx is never followed).

    Raises DeliveryError (with its cause) for everything else: refused destination, DNS, connection, TLS, deadline.
    """
    deadline = _Deadline(timeout)
    try:
        dest = destination(url, deadline)
        connection_class = _PinnedHTTPSConnection if dest.scheme == "https" else _PinnedHTTPConnection
        conn = connection_class(dest.host, dest.port, addresses=dest.addresses, deadline=deadline)
        try:
            conn.request("POST", dest.target, body=body, headers={**headers, "Connection": "close"})
            response = conn.getresponse()
            response.read(MAX_RESPONSE_BYTES)
            return response.status
        finally:
            conn.close()
    except DeliveryError:
        raise
    except (TimeoutError, SoftTimeLimitExceeded) as exc:
        raise DeliveryError(Cause.TIMEOUT, f"{type(exc).__name__}: {exc}") from None
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(Cause.CERTIFICATE, f"{type(exc).__name__}: {exc}") from None
    except ssl.SSLError as exc:
        raise DeliveryError(Cause.TLS, f"{type(exc).__name__}: {exc}") from None
    except http.client.HTTPException as exc:
        raise DeliveryError(Cause.INVALID_RESPONSE, f"{type(exc).__name__}: {exc}") from None
    except ConnectionRefusedError as exc:
        raise DeliveryError(Cause.REFUSED, f"{type(exc).__name__}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise DeliveryError(Cause.NETWORK, f"{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------------------------
# Emission
# ---------------------------------------------------------------------------------------------------------------
def token_payload(token: Token) -> dict:
    return {
        "id": str(token.public_id),
        "label": token.label,
        "prefix": token.secret_prefix,
        "client": {"siret": token.client.siret, "name": token.client.name},
        "origin": token.origin,
        "privileges": sorted(p.code for p in token.privileges.all()),
        "issued_at": token.issued_at.isoformat(),
        "expires_at": token.expires_at.isoformat(),
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
        "renewed_by": str(token.renewed_by.public_id) if token.renewed_by_id else None,
    }


def webhook_emit(
    *,
    client: Client,
    event_type: str,
    payload: dict,
    dedup_key: str | None = None,
    endpoint: WebhookEndpoint | None = None,
) -> WebhookEvent | None:
    """Record an event for every active webhook of `client` in the caller's transaction; delivery starts on commit.

    Returns None when the client has no active webhook, or when `dedup_key` was already emitted.
    Event types: token.reminder_sent, token.renewal_validated, token.revoked, token.expired (and ping).
    """
    if event_type not in WebhookEvent.Type.values:
        raise ValueError(f"unknown webhook event type: {event_type}")
    endpoints = WebhookEndpoint.objects.filter(client=client, disabled_at__isnull=True)
    if endpoint is not None:  # a test event for one endpoint
        endpoints = endpoints.filter(pk=endpoint.pk)
    endpoints = list(endpoints)
    if not endpoints:
        return None
    payload = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                client=client, type=event_type, payload=payload, dedup_key=dedup_key
            )
    except IntegrityError:
        return None
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(event=event, endpoint=e, url=e.url, next_attempt_at=event.created_at)
            for e in endpoints
        ]
    )
    ids = [d.pk for d in deliveries]
    transaction.on_commit(lambda: _enqueue_many(ids))
    return event


def _enqueue_many(ids: list[int]) -> None:
    for delivery_id in ids:
        enqueue_delivery(delivery_id)


def enqueue_delivery(delivery_id: int, countdown: float = 0) -> None:
    from .tasks import webhook_deliver

    try:
        webhook_deliver.apply_async(args=[delivery_id], countdown=countdown)
    except Exception:  # broker down: the periodic retry sweep (webhooks_retry_due) picks it up
        logger.exception("could not enqueue webhook delivery %s", delivery_id)


@transaction.atomic
def webhook_delivery_replay(*, delivery: WebhookDelivery) -> None:
    """Admin action: send again (same event id), with a fresh attempt budget (not while an attempt is in flight)."""
    replayed = (
        WebhookDelivery.objects.filter(pk=delivery.pk, endpoint__isnull=False)
        .exclude(status=WebhookDelivery.Status.SENDING)
        .update(status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now())
    )
    if replayed:
        transaction.on_commit(lambda: enqueue_delivery(delivery.pk))


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, by) -> None:
    """The integrator deletes an endpoint: its secret goes, its deliveries stay (with their URL) in the history;
    those still waiting are given up."""
    now = timezone.now()
    waiting = list(
        WebhookDelivery.objects.filter(endpoint=endpoint, status=WebhookDelivery.Status.PENDING).values_list(
            "pk", flat=True
        )
    )
    WebhookDelivery.objects.filter(pk__in=waiting).update(
        status=WebhookDelivery.Status.FAILED, next_attempt_at=None
    )
    WebhookAttempt.objects.bulk_create(
        [
            WebhookAttempt(delivery_id=pk, at=now, cause=Cause.DELETED, error=f"deleted by {by}")
            for pk in waiting
        ]
    )
    WebhookDelivery.objects.filter(endpoint=endpoint, url="").update(url=endpoint.url)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()
    logger.info("webhook endpoint %s (%s) deleted by %s", endpoint.pk, endpoint.url, by)


# ---------------------------------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------------------------------
def event_body(event: WebhookEvent) -> bytes:
    document = {
        "id": str(event.id),
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "client": {"siret": event.client.siret, "name": event.client.name},
        "data": event.payload,
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def task_time_limits() -> tuple[float, float]:
    """(soft, hard) Celery time limits of one delivery task: the request's deadline, plus room for the database."""
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    return timeout + 10, timeout + 20


def lease_seconds() -> float:
    """A claim outlives the hard time limit: a live worker never loses its row; a killed one's is taken over."""
    return task_time_limits()[1] + 10


def retry_delay(attempts: int) -> dt.timedelta:
    """Delay before the next attempt after `attempts` failures: base × 2^(n-1), capped."""
    return outbox.backoff(
        attempts, base=settings.WEBHOOK_BACKOFF_BASE_SECONDS, factor=BACKOFF_FACTOR, cap=MAX_BACKOFF_SECONDS
    )


OUTBOX = outbox.Outbox(
    model=WebhookDelivery,
    pending=WebhookDelivery.Status.PENDING,
    sending=WebhookDelivery.Status.SENDING,
    lease_seconds=lease_seconds,
)


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    cause: str = ""
    error: str = ""
    final: bool = False  # no retry whatever the attempt count

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _send(delivery: WebhookDelivery, endpoint: WebhookEndpoint) -> Outcome:
    """The request itself, outside any transaction."""
    event = delivery.event
    body = event_body(event)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "X-Webhook-Id": str(event.id),
        "X-Webhook-Event": event.type,
        "X-Webhook-Timestamp": str(int(time.time())),
        "X-Signature-256": sign(endpoint.secret, body),
    }
    try:
        code = post(endpoint.url, body, headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
    except DeliveryError as exc:
        return Outcome(cause=exc.cause, error=str(exc))
    return Outcome(status_code=code, cause=Cause.HTTP)


def webhook_delivery_attempt(*, delivery_id: int, now: dt.datetime | None = None) -> str | None:
    """Try one due delivery once; returns its new status (None when it was not due or another worker has it).

    Claim (short transaction, SKIP LOCKED, lease), send with no transaction open, then settle on the claim; a worker
    killed in between leaves a `sending` row that any worker takes over once its lease has expired.
    """
    worker = outbox.worker_id()
    if not OUTBOX.claim(worker=worker, limit=1, now=now, pks=[delivery_id]):
        return None
    delivery = OUTBOX.claimed([delivery_id], worker=worker).select_related("event__client", "endpoint").get()
    endpoint = delivery.endpoint
    started = time.monotonic()
    if delivery.attempts > settings.WEBHOOK_MAX_ATTEMPTS:  # claimed again and again by workers that died
        outcome = Outcome(cause=Cause.INTERRUPTED, error=f"claimed {delivery.attempts} times", final=True)
    elif endpoint is None:
        outcome = Outcome(cause=Cause.DELETED, error="endpoint deleted", final=True)
    elif endpoint.disabled_at is not None:
        outcome = Outcome(cause=Cause.DISABLED, error="endpoint disabled", final=True)
    else:
        try:
            outcome = _send(delivery, endpoint)
        except Exception as exc:  # a bug must not leave the row claimed until its lease ends
            logger.exception("webhook delivery %s: unexpected error", delivery.pk)
            outcome = Outcome(cause=Cause.NETWORK, error=f"{type(exc).__name__}: {exc}")
    duration = int((time.monotonic() - started) * 1000)
    return _settle(delivery, worker, outcome, duration, now or timezone.now())


def _settle(
    delivery: WebhookDelivery, worker: str, outcome: Outcome, duration_ms: int, now: dt.datetime
) -> str | None:
    """Record the attempt and the delivery's new state, if this worker's claim still holds."""
    if outcome.ok:
        fields = {"status": WebhookDelivery.Status.DELIVERED, "delivered_at": now, "next_attempt_at": None}
    elif outcome.final or delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        fields = {"status": WebhookDelivery.Status.FAILED, "next_attempt_at": None}
    else:
        delay = retry_delay(delivery.attempts)
        fields = {"status": WebhookDelivery.Status.PENDING, "next_attempt_at": now + delay}
    if not outcome.ok:
        logger.warning(
            "webhook delivery %s attempt %d: %s %s",
            delivery.pk,
            delivery.attempts,
            outcome.status_code or outcome.cause,
            outcome.error,
        )
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            at=now,
            status_code=outcome.status_code,
            cause=outcome.cause,
            error=outcome.error[:1000],
            duration_ms=duration_ms,
        )
        if not OUTBOX.settle(delivery.pk, worker=worker, **fields):
            logger.warning("webhook delivery %s: claim lost before settling (lease expired)", delivery.pk)
            return None
        if fields["status"] == WebhookDelivery.Status.PENDING:
            countdown = (fields["next_attempt_at"] - now).total_seconds()
            transaction.on_commit(lambda: enqueue_delivery(delivery.pk, countdown=countdown))
    return fields["status"]


def deliveries_due(*, now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """Deliveries overdue by a minute (a lost task, a broker that was down) and claims whose worker died."""
    now = now or timezone.now()
    return list(
        OUTBOX.claimable(now - dt.timedelta(minutes=1))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


# Endpoints, as integrators register them
@transaction.atomic
def webhook_endpoint_register(
    *, client: Client, url: str, by, description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Register an HTTPS URL for `client`; returns the endpoint and its signing secret (shown once)."""
    validate_webhook_url(url)
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint.objects.create(
        client=client, url=url, secret=secret, description=description, created_by=by
    )
    return endpoint, secret


@transaction.atomic
def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint, by) -> str:
    secret = "whsec_" + secrets.token_urlsafe(32)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret=secret)
    return secret


@transaction.atomic
def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, by) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk, disabled_at__isnull=True).update(
        disabled_at=timezone.now()
    )

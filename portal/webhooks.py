"""Signed webhook events: emission (in the caller's transaction), delivery with bounded exponential backoff.

Receivers verify `X-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw request body with the endpoint's
signing secret, and deduplicate on the body's `id` (also in `X-Webhook-Id`): a retried or replayed event keeps its id.
"""

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from tokens.models import Client, Token

from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

logger = logging.getLogger("portal.webhooks")

USER_AGENT = "tokenmgr-webhooks/1"
MAX_RESPONSE_BYTES = 2048
MAX_BACKOFF_SECONDS = 6 * 3600


# ---------------------------------------------------------------------------------------------------------------
# URL rules
# ---------------------------------------------------------------------------------------------------------------
def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_webhook_url(url: str) -> None:
    """HTTPS only, no credentials, a real host name (http on loopback only when WEBHOOK_ALLOW_LOOPBACK, tests)."""
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
    if not loopback_ok:
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if "." not in host or host.endswith((".localhost", ".local", ".internal")):
                raise ValidationError(_("Le nom d'hôte doit être public."), code="host") from None
        else:
            if not addr.is_global:
                raise ValidationError(_("L'adresse doit être publique."), code="host")


def _assert_public_destination(url: str) -> None:
    """At delivery time: every address the host resolves to must be public (no SSRF to the internal network)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if settings.WEBHOOK_ALLOW_LOOPBACK and _is_loopback_host(host):
        return
    infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_global:
            raise ValueError(f"destination address not public: {info[4][0]}")


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
        [WebhookDelivery(event=event, endpoint=e, next_attempt_at=event.created_at) for e in endpoints]
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
    """Admin action: send again (same event id), with a fresh attempt budget."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
    )
    transaction.on_commit(lambda: enqueue_delivery(delivery.pk))


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a 3xx is an answer (failure), never followed


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    _assert_public_destination(url)
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (URL validated)
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(MAX_RESPONSE_BYTES)
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def backoff_seconds(attempts: int) -> int:
    """Delay before the next attempt after `attempts` failures: base × 2^(n-1), capped."""
    return min(settings.WEBHOOK_BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)


def webhook_delivery_attempt(*, delivery_id: int, now: dt.datetime | None = None) -> str | None:
    """Try one pending delivery once; returns its new status (None if it was not pending or is locked).

    The row stays locked during the POST, so two workers never send the same delivery at once.
    """
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event__client", "endpoint")
            .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING)
            .first()
        )
        if delivery is None:
            return None
        endpoint, event = delivery.endpoint, delivery.event
        if endpoint.disabled_at is not None:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.save(update_fields=["status"])
            WebhookAttempt.objects.create(delivery=delivery, error="webhook désactivé")
            return delivery.status
        body = event_body(event)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "X-Webhook-Id": str(event.id),
            "X-Webhook-Event": event.type,
            "X-Webhook-Timestamp": str(int(time.time())),
            "X-Signature-256": sign(endpoint.secret, body),
        }
        started = time.monotonic()
        code, error = None, ""
        try:
            code = _post(endpoint.url, body, headers, settings.WEBHOOK_TIMEOUT_SECONDS)
        except Exception as exc:  # network errors of every kind are a failed attempt
            error = f"{type(exc).__name__}: {exc}"[:500]
        duration = int((time.monotonic() - started) * 1000)
        now = now or timezone.now()
        WebhookAttempt.objects.create(
            delivery=delivery, at=now, status_code=code, error=error, duration_ms=duration
        )
        delivery.attempts += 1
        if code is not None and 200 <= code < 300:
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
        elif delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.next_attempt_at = None
        else:
            delay = backoff_seconds(delivery.attempts)
            delivery.next_attempt_at = now + dt.timedelta(seconds=delay)
            transaction.on_commit(lambda: enqueue_delivery(delivery.pk, countdown=delay))
        delivery.save(update_fields=["status", "attempts", "delivered_at", "next_attempt_at"])
        return delivery.status


def deliveries_due(*, now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """Pending deliveries whose next attempt is overdue by a minute (a lost task, a broker that was down)."""
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now - dt.timedelta(minutes=1)
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )

"""POST /api/exposed_tokens: secret scanners report secrets they found (docs/exposed-tokens.md).

Open, rate-limited per client IP; a report signed by a registered reporter (`X-Reporter: <name>`,
`X-Signature: sha256=<hex HMAC-SHA256 of the body with its key>`) gets the higher limit, a wrong signature is refused
(401). The answer is the same 200 whatever the secrets were: it reveals nothing about any token. The secrets are
never logged: this module logs nothing about the items, and the metrics count outcomes only.
"""

import hashlib
import hmac
import json

from django.conf import settings
from django.http import JsonResponse
from ninja import Router

from tokenmgr import ratelimit
from tokenmgr.errors import ErrorOut, body_size_error, error_response
from tokenmgr.metrics import count_exposure_report

from .exposure import Outcome, exposure_report
from .models import ExposureReporter

router = Router(tags=["jetons"])

SIGNATURE_SCHEME = "sha256="
# Compared against when the reporter is unknown, so that an unknown name costs the same as a wrong signature.
_NO_KEY = b"\0" * 32


def _reporter(request, body: bytes) -> tuple[ExposureReporter | None, bool]:
    """(the reporter whose valid signature the request carries, or None; whether the signature headers were sent)."""
    name = request.headers.get("X-Reporter", "").strip()
    signature = request.headers.get("X-Signature", "").strip()
    if not name and not signature:
        return None, False
    reporter = ExposureReporter.objects.filter(name=name[:64], active=True).first() if name else None
    key = reporter.key.encode() if reporter else _NO_KEY
    expected = SIGNATURE_SCHEME + hmac.new(key, body, hashlib.sha256).hexdigest()
    valid = hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
    return (reporter if valid else None), True


def _text(value) -> str | None:
    """A string field of an item ('' when absent), None when it is of another type."""
    if value is None:
        return ""
    return value if isinstance(value, str) else None


def _item_outcome(item, reporter: ExposureReporter | None) -> Outcome:
    if not isinstance(item, dict):
        return Outcome.INVALID
    secret, url, source = _text(item.get("token")), _text(item.get("url")), _text(item.get("source"))
    if not secret or url is None or source is None:
        return Outcome.INVALID
    return exposure_report(secret=secret.strip(), url=url.strip(), source=source.strip(), reporter=reporter)


@router.post(
    "/api/exposed_tokens",
    response={200: dict, 400: ErrorOut, 401: ErrorOut, 413: ErrorOut, 422: ErrorOut, 429: ErrorOut},
    summary="Signaler des jetons exposés",
    description=(
        "Corps JSON : une liste d'au plus `EXPOSED_TOKENS_MAX_ITEMS` (100) objets "
        '`{"token": "…", "url": "…", "source": "…"}`. Réponse 200 `{"status": "received"}` que les jetons '
        "correspondent ou non. Un jeton actif signalé est révoqué (ou seulement marqué, selon "
        "`EXPOSED_TOKEN_POLICY`) et ses contacts sont prévenus. Signature facultative d'un signaleur enregistré : "
        "en-têtes `X-Reporter` et `X-Signature: sha256=<HMAC-SHA256 hexadécimal du corps>` (limite plus haute) ; "
        "signature fausse : 401."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "maxItems": 100,
                        "description": 'Objets {"token", "url", "source"} ; les autres éléments sont ignorés.',
                    }
                }
            },
        },
        "parameters": [
            {"name": "X-Reporter", "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": "X-Signature", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
    },
)
def exposed_tokens(request):
    signed = bool(request.headers.get("X-Reporter") or request.headers.get("X-Signature"))
    if signed:
        quota = ratelimit.hit(
            "exposed-signed-ip", ratelimit.client_ip(request), settings.RATELIMIT_EXPOSED_SIGNED_PER_IP
        )
    else:
        quota = ratelimit.hit(
            "exposed-ip", ratelimit.client_ip(request), settings.RATELIMIT_EXPOSED_UNSIGNED_PER_IP
        )
    if quota.exceeded:
        return ratelimit.too_many(quota)
    headers = quota.headers()
    refused = body_size_error(
        request, limit=settings.EXPOSED_TOKENS_MAX_BODY_BYTES, items="les signalements", headers=headers
    )
    if refused is not None:
        return refused
    body = request.body
    reporter, signed = _reporter(request, body)
    if signed and reporter is None:
        return error_response(
            401,
            code="invalid_signature",
            title="Signature invalide",
            detail="Signaleur inconnu ou inactif, ou `X-Signature` ne correspond pas au corps.",
            headers=headers,
        )
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return error_response(
            400, code="invalid_json", detail="Le corps n'est pas du JSON valide.", headers=headers
        )
    if not isinstance(items, list):
        return error_response(
            422, detail='Le corps doit être une liste d\'objets {"token", "url", "source"}.', headers=headers
        )
    if len(items) > settings.EXPOSED_TOKENS_MAX_ITEMS:
        return error_response(
            422,
            detail=f"{len(items)} signalements : {settings.EXPOSED_TOKENS_MAX_ITEMS} au plus par requête.",
            headers=headers,
        )
    for item in items:
        count_exposure_report(_item_outcome(item, reporter), signed=signed)
    return JsonResponse({"status": "received"}, headers=headers)

"""GET /v2/privileges (docs/http-api.md)."""

from django.conf import settings
from django.http import JsonResponse
from django.utils import timezone
from ninja import Router, Schema

from tokenmgr import ratelimit
from tokenmgr.api_auth import request_token, unauthorized
from tokenmgr.errors import ErrorOut

from .credentials import digest
from .selectors import TokenCheck, token_check
from .services.registry import token_use_record

router = Router(tags=["jetons"])


class PrivilegesOut(Schema):
    privileges: list[str]


@router.get(
    "/v2/privileges",
    response={200: PrivilegesOut, 401: ErrorOut, 422: ErrorOut, 429: ErrorOut, 503: ErrorOut},
    summary="Privilèges d'un jeton",
    description="Liste des privilèges d'un jeton actif. Jeton en paramètre `token` ou en en-tête `Authorization: Bearer`.",
    openapi_extra={
        "parameters": [
            {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}},
        ]
    },
)
def privileges(request):
    counters = [("privileges-ip", ratelimit.client_ip(request), settings.RATELIMIT_PRIVILEGES_PER_IP)]
    secret = request_token(request, query=True)
    if secret:
        # Per-token counter keyed by a digest, never by the secret itself.
        counters.append(("privileges-token", digest(secret)[:32], settings.RATELIMIT_PRIVILEGES_PER_TOKEN))
    quotas = ratelimit.hit_many(*counters)
    quota = ratelimit.tightest(*quotas)
    if quota.exceeded:
        return ratelimit.too_many(quota)
    now = timezone.now()
    result = token_check(secret=secret, now=now, max_age=settings.TOKEN_CHECK_CACHE_SECONDS)
    if result.outcome is not TokenCheck.OK:
        return unauthorized(result.outcome.value, query=True, headers=quota.headers())
    token_use_record(check=result, now=now)
    return JsonResponse({"privileges": result.privileges}, headers=quota.headers())

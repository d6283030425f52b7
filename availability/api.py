"""JSON routes of the availability app (docs/http-api.md), all rate-limited per client IP with RateLimit-* headers.

Parameters are parsed in the views (declared for OpenAPI in `openapi_extra`) so that every answer, 422 included,
goes through the rate limiter and carries its headers.
"""

import hashlib
import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from ninja import Field, Router, Schema

from tokenmgr import ratelimit
from tokenmgr.api_auth import DeclaredBearer, request_token, unauthorized
from tokenmgr.errors import ErrorOut, body_size_error, error_response
from tokens.catalogue import ENDPOINT_PATHS
from tokens.models import ClientMembership, Token
from tokens.selectors import TokenCheck, token_check

from . import periods, selectors, services
from .models import Incident

router = Router(tags=["disponibilité"])

ENDPOINT_LIST = sorted(ENDPOINT_PATHS)
JSON_DUMPS = {"ensure_ascii": False}


# ------------------------------------------------------------------------------
# Schemas (documentation of the answers; the views build them as plain dicts)
# ------------------------------------------------------------------------------
class DayCounts(Schema):
    total: int = Field(description="Appels du jour (toutes réponses).")
    s404: int = Field(alias="404")
    s502: int = Field(alias="502")
    s503: int = Field(alias="503")
    s504: int = Field(alias="504")


class AvailabilityOut(Schema):
    endpoint: str
    days_availability: dict[str, DayCounts] = Field(
        description="Un jour calendaire (TIME_ZONE) par clé AAAA-MM-JJ, du plus ancien au plus récent, tous présents."
    )
    total_availability: float | None = Field(
        description="100 × (1 − indisponibles / total) sur la fenêtre, arrondi au centième supérieur à partir de "
        "0,005 ; null sans appel. Indisponible : réponse 500, 502, 503 ou 504."
    )
    last_week_availability: float | None = Field(
        description="Idem sur les 7 jours complets avant aujourd'hui."
    )


class EndpointStatus(Schema):
    endpoint: str
    label: str
    status: str = Field(pattern="^(UP|DOWN|UNKNOWN)$")
    calls: int
    unavailable_calls: int
    last_call_at: str | None
    ongoing_incidents: list[int]


class CurrentStatusOut(Schema):
    generated_at: str
    window_minutes: int
    down_ratio: float
    endpoints: list[EndpointStatus]


class IncidentOut(Schema):
    id: int
    title: str
    state: str = Field(pattern="^(ongoing|upcoming|past)$")
    planned: bool
    starts_at: str
    ends_at: str | None
    endpoints: list[str]
    description: str
    description_html: str
    url: str


class IncidentsOut(Schema):
    incidents: list[IncidentOut]


class LineErrorOut(Schema):
    line: int
    detail: str


class IngestOut(Schema):
    accepted: int
    rejected: int
    errors: list[LineErrorOut]
    errors_truncated: bool
    replayed: bool


def _json(data, *, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, json_dumps_params=JSON_DUMPS)


def _param(request, name: str) -> str | None:
    values = request.GET.getlist(name)
    if len(values) > 1:
        raise periods.PeriodError(f"`{name}` ne doit être passé qu'une fois.")
    return values[0] if values else None


# ------------------------------------------------------------------------------
# GET /api/watchdoge/stats/provider_availabilities
# ------------------------------------------------------------------------------
@router.get(
    "/api/watchdoge/stats/provider_availabilities",
    response={200: AvailabilityOut, 304: None, 422: ErrorOut, 429: ErrorOut, 503: ErrorOut},
    by_alias=True,
    summary="Disponibilité d'un endpoint",
    description=(
        "Ouverte, sans jeton. Appels `maintenant − period ≤ horodatage ≤ maintenant` (à la minute près), par jour "
        f"calendaire ({settings.TIME_ZONE}). `period` : `<N><unité>`, N ≥ 1 sans zéro initial, unité `y M w d` "
        "(pas calendaires, même heure locale, fin de mois ramenée au dernier jour) ou `h m s` (temps écoulé) ; "
        "`M` = mois, `m` = minutes ; défaut `6M`, au plus `10y`. Réponse cachable (`Cache-Control`, `ETag`, "
        "`If-None-Match` → 304)."
    ),
    openapi_extra={
        "parameters": [
            {
                "name": "period",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "pattern": periods.openapi_pattern(), "default": "6M"},
                "example": "6M",
            },
            {
                "name": "endpoint",
                "in": "query",
                "required": True,
                "schema": {"type": "string", "enum": ENDPOINT_LIST},
                "example": "api/v3/entreprises_restored",
            },
        ]
    },
)
@ratelimit.limited("stats-ip", "RATELIMIT_STATS_PER_IP")
def provider_availabilities(request):
    now = timezone.now()
    try:
        period = _param(request, "period")
        endpoint = _param(request, "endpoint")
        start = periods.window_start(periods.DEFAULT_PERIOD if period is None else period, now)
    except periods.PeriodError as exc:
        return error_response(422, code="invalid_period", detail=str(exc))
    if endpoint not in ENDPOINT_PATHS:
        return error_response(
            422,
            code="invalid_endpoint",
            detail="`endpoint` est obligatoire et doit être l'une des valeurs de la liste de référence, "
            "par exemple api/v3/entreprises_restored.",
        )
    data = selectors.provider_availabilities(endpoint=endpoint, start=start, now=now)
    body = json.dumps(data, ensure_ascii=False).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={settings.AVAILABILITY_STATS_MAX_AGE}"}
    if _etag_matches(request.headers.get("If-None-Match", ""), etag):
        return HttpResponse(status=304, headers=headers)
    return HttpResponse(body, content_type="application/json", headers=headers)


def _etag_matches(header: str, etag: str) -> bool:
    if not header:
        return False
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    return "*" in candidates or etag in candidates


# ------------------------------------------------------------------------------
# GET /api/watchdoge/dashboard/current_status
# ------------------------------------------------------------------------------
@router.get(
    "/api/watchdoge/dashboard/current_status",
    response={200: CurrentStatusOut, 429: ErrorOut, 503: ErrorOut},
    summary="État de chaque endpoint en temps réel",
    description=(
        "Par endpoint : DOWN si au moins `down_ratio` des appels des `window_minutes` dernières minutes ont "
        "répondu 500, 502, 503 ou 504 ; UNKNOWN sans appel sur cette durée ; UP sinon. `last_call_at` : "
        "horodatage du dernier appel reçu."
    ),
)
@ratelimit.limited("status-ip", "RATELIMIT_STATUS_PER_IP")
def current_status(request):
    now = timezone.now()
    endpoints = selectors.current_status(now=now)
    for item in endpoints:
        item["last_call_at"] = item["last_call_at"].isoformat() if item["last_call_at"] else None
    return _json(
        {
            "generated_at": now.isoformat(),
            "window_minutes": settings.AVAILABILITY_STATUS_WINDOW_MINUTES,
            "down_ratio": settings.AVAILABILITY_DOWN_RATIO,
            "endpoints": endpoints,
        }
    )


# ------------------------------------------------------------------------------
# GET /api/incidents
# ------------------------------------------------------------------------------
def incident_data(incident: Incident, now) -> dict:
    return {
        "id": incident.id,
        "title": incident.title,
        "state": incident.state(now),
        "planned": incident.planned,
        "starts_at": incident.starts_at.isoformat(),
        "ends_at": incident.ends_at.isoformat() if incident.ends_at else None,
        "endpoints": sorted(e.path for e in incident.endpoints.all()),
        "description": incident.description,
        "description_html": str(incident.description_html),
        "url": f"{settings.SITE_URL}/incidents/{incident.id}/",
    }


@router.get(
    "/api/incidents",
    response={200: IncidentsOut, 429: ErrorOut, 503: ErrorOut},
    summary="Incidents en cours, programmés et passés",
    description="Incidents en cours et à venir, puis les derniers incidents passés (du plus récent au plus ancien).",
)
@ratelimit.limited("incidents-ip", "RATELIMIT_INCIDENTS_PER_IP")
def incidents(request):
    now = timezone.now()
    overview = selectors.incidents_overview(now=now)
    items = [*overview["ongoing"], *overview["upcoming"], *overview["past"]]
    return _json({"incidents": [incident_data(i, now) for i in items]})


# ------------------------------------------------------------------------------
# POST /api/watchdoge/calls
# ------------------------------------------------------------------------------
def _may_ingest(token_id: int) -> bool:
    """A token may send calls when its client has an active member to whom the permission
    availability.ingest_calls was given explicitly, directly or through one of their groups. Being a superuser
    grants nothing here: a token acts for its client, not with the full rights of whoever belongs to it."""
    client_id = Token.objects.filter(pk=token_id).values_list("client_id", flat=True).first()
    if client_id is None:
        return False
    granted = {"codename": "ingest_calls", "content_type__app_label": "availability"}
    holders = Permission.objects.filter(**granted)
    access = ClientMembership.objects.effective().filter(client_id=client_id).values("user_id")
    members = get_user_model().objects.filter(pk__in=access, is_active=True)
    return (
        members.filter(user_permissions__in=holders).exists()
        or members.filter(groups__permissions__in=holders).exists()
    )


@router.post(
    "/api/watchdoge/calls",
    response={
        200: IngestOut,
        401: ErrorOut,
        403: ErrorOut,
        411: ErrorOut,
        413: ErrorOut,
        422: ErrorOut,
        429: ErrorOut,
        503: ErrorOut,
    },
    auth=DeclaredBearer(),
    summary="Envoi d'appels par lot (expéditeurs de journaux)",
    description=(
        'Corps : JSON Lines, un appel par ligne `{"timestamp": "2026-11-27T10:15:03+01:00", "endpoint": '
        '"api/v3/entreprises_restored", "status": 200}`, validé comme `manage.py ingest_calls`. Les lignes '
        "valides sont comptées, chaque ligne rejetée est listée avec son numéro (une ligne de plus de "
        f"{settings.AVAILABILITY_INGEST_MAX_LINE_BYTES} octets, fin de ligne comprise, est rejetée sans être lue). "
        f"Corps de {settings.AVAILABILITY_INGEST_MAX_BODY_BYTES} octets au plus (`Content-Length`), sinon 413. "
        "Jeton actif en `Authorization: Bearer`, dont le client a un membre actif à qui la permission "
        "`availability.ingest_calls` a été donnée explicitement (directement ou par un groupe ; le statut de "
        "superutilisateur ne suffit pas). En-tête optionnel `Idempotency-Key`, propre à chaque jeton : un lot "
        "renvoyé par le même jeton avec la même clé n'est pas compté deux fois."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        },
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 128},
            }
        ],
    },
)
@ratelimit.limited("ingest-ip", "RATELIMIT_INGEST_PER_IP")
def calls(request):
    check = token_check(secret=request_token(request), now=timezone.now())
    if check.outcome is not TokenCheck.OK:
        return unauthorized(check.outcome.value)
    if not _may_ingest(check.token_id):
        return error_response(
            403, detail="Ce jeton ne permet pas d'envoyer des appels (permission availability.ingest_calls)."
        )
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > 128:
        return error_response(422, detail="`Idempotency-Key` : 128 caractères au plus.")
    refused = body_size_error(
        request, limit=settings.AVAILABILITY_INGEST_MAX_BODY_BYTES, items="les appels", require_length=True
    )
    if refused is not None:
        return refused
    # Read line by line from the stream (Django stops at Content-Length), never the whole body at once.
    lines = services.LineReader(request.readline, max_line_bytes=settings.AVAILABILITY_INGEST_MAX_LINE_BYTES)
    result, replayed = services.calls_batch_ingest(lines=lines, token_id=check.token_id, idempotency_key=key)
    return _json(
        {
            "accepted": result.accepted,
            "rejected": result.rejected,
            "errors": [{"line": n, "detail": d} for n, d in result.errors],
            "errors_truncated": result.rejected > len(result.errors),
            "replayed": replayed,
        }
    )

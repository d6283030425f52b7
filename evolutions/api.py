"""GET /api/evolutions: the published evolutions as JSON (docs/evolutions.md)."""

from django.conf import settings
from django.http import JsonResponse
from django.urls import reverse
from django.utils import timezone
from ninja import Router, Schema

from tokenmgr import ratelimit
from tokenmgr.errors import ErrorOut, error_response

from . import selectors
from .models import Evolution

router = Router(tags=["évolutions"])


class RevisionOut(Schema):
    number: int
    at: str
    note: str


class EvolutionOut(Schema):
    id: str
    kind: str
    kind_label: str
    title: str
    body: str
    body_html: str
    endpoints: list[str]
    privileges: list[str]
    effective_on: str
    deprecation_at: str | None
    sunset_at: str | None
    published_at: str
    corrected_at: str | None
    revision: int
    revisions: list[RevisionOut]
    url: str


class EvolutionsOut(Schema):
    evolutions: list[EvolutionOut]


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def evolution_data(entry: Evolution) -> dict:
    endpoints = list(entry.endpoints.all())
    return {
        "id": str(entry.public_id),
        "kind": entry.kind,
        "kind_label": str(entry.get_kind_display()),
        "title": entry.title,
        "body": entry.body,
        "body_html": str(entry.body_html),
        "endpoints": sorted(e.path for e in endpoints),
        "privileges": sorted({p.code for e in endpoints for p in e.privileges.all()}),
        "effective_on": entry.effective_on.isoformat(),
        "deprecation_at": _iso(entry.deprecation_at),
        "sunset_at": _iso(entry.sunset_at),
        "published_at": entry.published_at.isoformat(),
        "corrected_at": _iso(entry.corrected_at),
        "revision": entry.revision,
        "revisions": [
            {"number": r.number, "at": r.created_at.isoformat(), "note": r.note}
            for r in entry.revisions.all()
        ],
        "url": settings.SITE_URL + reverse("evolution_detail", args=[entry.public_id]),
    }


@router.get(
    "/api/evolutions",
    response={200: EvolutionsOut, 422: ErrorOut, 429: ErrorOut, 503: ErrorOut},
    summary="Évolutions de l'API",
    description=(
        "Évolutions publiées (endpoints, paramètres d'appel, nouvelles API, sources de données, sécurité et "
        "volumétrie) : les retraits à venir d'abord (Sunset le plus proche en tête), puis les autres, de la plus "
        "récente à la plus ancienne. Filtres facultatifs `kind` et `endpoint` (chemin du catalogue)."
    ),
    openapi_extra={
        "parameters": [
            {"name": "kind", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "endpoint", "in": "query", "required": False, "schema": {"type": "string"}},
        ]
    },
)
@ratelimit.limited("evolutions-ip", "RATELIMIT_EVOLUTIONS_PER_IP")
def evolutions(request):
    filters, errors = selectors.filters_from(request.GET)
    if errors:
        return error_response(422, detail=" ".join(errors))
    entries = selectors.published_evolutions(filters=filters, now=timezone.now())
    return JsonResponse({"evolutions": [evolution_data(e) for e in entries]})

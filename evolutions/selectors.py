"""Reads of the evolutions: the public list (filtered, upcoming sunsets first), one token's entries, the tokens whose
privileges hit a sunset before their own expiry."""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Case, Exists, F, IntegerField, OuterRef, QuerySet, Value, When
from django.utils import timezone

from tokens.models import Endpoint, Token

from .models import Evolution, EvolutionKind


@dataclass(frozen=True)
class EvolutionFilters:
    kind: str = ""
    endpoint: str = ""  # an endpoint path of the catalogue


def filters_from(params) -> tuple[EvolutionFilters, list[str]]:
    """Filters read from query parameters; unknown values are reported, not applied."""
    errors = []
    kind = (params.get("kind") or "").strip()
    if kind and kind not in EvolutionKind.values:
        errors.append(f"kind : valeur inconnue « {kind[:64]} ».")
        kind = ""
    endpoint = (params.get("endpoint") or "").strip()
    if endpoint and not Endpoint.objects.filter(path=endpoint).exists():
        errors.append(f"endpoint : endpoint inconnu « {endpoint[:128]} ».")
        endpoint = ""
    return EvolutionFilters(kind=kind, endpoint=endpoint), errors


def published_evolutions(
    *, filters: EvolutionFilters | None = None, now: dt.datetime | None = None
) -> QuerySet:
    """Published entries, upcoming sunsets first (soonest first), then the others, newest first."""
    now = now or timezone.now()
    filters = filters or EvolutionFilters()
    qs = Evolution.objects.published()
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.endpoint:
        qs = qs.filter(endpoints__path=filters.endpoint)
    return (
        qs.annotate(
            upcoming_sunset=Case(
                When(sunset_at__gt=now, then=Value(0)), default=Value(1), output_field=IntegerField()
            )
        )
        .order_by("upcoming_sunset", F("sunset_at").asc(nulls_last=True), "-published_at", "-id")
        .prefetch_related("endpoints__privileges", "revisions")
        .distinct()
    )


def evolution_by_public_id(public_id) -> Evolution | None:
    return (
        Evolution.objects.published()
        .prefetch_related("endpoints__privileges", "revisions")
        .filter(public_id=public_id)
        .first()
    )


def endpoint_choices() -> list[str]:
    return list(Endpoint.objects.order_by("path").values_list("path", flat=True))


def token_evolutions(*, token: Token, now: dt.datetime | None = None) -> list[Evolution]:
    """The published entries that affect this token (through its privileges), upcoming sunsets first, each with
    `token_sunset_first`: whether its sunset falls before the token's own expiry."""
    entries = list(
        published_evolutions(now=now).filter(endpoints__privileges__in=token.privileges.values("pk"))
    )
    for entry in entries:
        entry.token_sunset_first = entry.sunset_at is not None and entry.sunset_at < token.expires_at
    return entries


def sunset_before_expiry(*, token_ids: Iterable[int], now: dt.datetime | None = None) -> set[int]:
    """Among `token_ids`, the tokens one of whose privileges grants an endpoint whose sunset (published, still to
    come) falls before the token's own expiry. One query, whatever the number of tokens."""
    ids = list(token_ids)
    if not ids:
        return set()
    now = now or timezone.now()
    hit = Evolution.objects.published().filter(
        sunset_at__gt=now,
        sunset_at__lt=OuterRef("expires_at"),
        endpoints__privileges__tokens=OuterRef("pk"),
    )
    return set(Token.objects.filter(pk__in=ids).filter(Exists(hit)).values_list("pk", flat=True))

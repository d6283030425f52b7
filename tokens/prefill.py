"""What a renewal form of a token is pre-filled with, and from where: one rule for every place that says it.

The renewal form (tokens.selectors.access_request_prefill) copies the token's last validated request when there is
one; otherwise it starts from the token itself (its client, privileges, label and contacts), and the project
description, expected volume and legal basis must be filled in. The reminder email and the form both state this
through renewal_prefill_source, never in words of their own.
"""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from . import validity
from .models import AccessRequest, Token

# Field groups of the access request form, in the form's order, with the words that name them.
FIELD_LABELS = {
    "client": _("l'organisation"),
    "privileges": _("les privilèges"),
    "label": _("l'intitulé du projet"),
    "contacts": _("les contacts"),
    "project_description": _("la description du projet"),
    "expected_volume": _("la volumétrie attendue"),
    "legal_basis": _("le cadre juridique"),
}


@dataclass(frozen=True)
class PrefillSource:
    """Where a renewal's form comes from: `request` (the earlier validated request, with its `date`) or the token
    alone (request None, date None); `fields` the field groups pre-filled (keys of FIELD_LABELS), `missing` the
    ones left to fill in."""

    request: AccessRequest | None
    date: dt.date | None
    fields: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [name for name in FIELD_LABELS if name not in self.fields]

    @property
    def field_labels(self) -> list[str]:
        return [str(FIELD_LABELS[name]) for name in self.fields]

    @property
    def missing_labels(self) -> list[str]:
        return [str(FIELD_LABELS[name]) for name in self.missing]


def _request_fields(request: AccessRequest) -> list[str]:
    present = {
        "client": True,
        "privileges": True,
        "label": bool(request.label),
        "contacts": any(
            (request.contacts or {}).get(role, {}).get("email") for role in AccessRequest.CONTACT_ROLES
        ),
        "project_description": bool(request.project_description.strip()),
        "expected_volume": request.expected_volume is not None,
        "legal_basis": bool(
            request.legal_basis_text.strip() or request.legal_basis_url or request.legal_basis_document
        ),
    }
    return [name for name in FIELD_LABELS if present[name]]


def _token_fields(token: Token) -> list[str]:
    present = {
        "client": True,
        "privileges": True,
        "label": bool(token.label),
        "contacts": bool(token.contacts.all()),
    }
    return [name for name in FIELD_LABELS if present.get(name)]


def renewal_prefill_sources(*, tokens: Iterable[Token]) -> dict[int, PrefillSource]:
    """renewal_prefill_source of each token, in one query (plus the tokens' contacts unless prefetched)."""
    tokens = list(tokens)
    ids = [t.pk for t in tokens]
    issuing: dict[int, AccessRequest] = {}
    latest: dict[int, AccessRequest] = {}
    validated = AccessRequest.objects.filter(
        Q(issued_token_id__in=ids) | Q(token_id__in=ids), state=AccessRequest.State.VALIDATED
    ).order_by("-decided_at", "-id")
    for request in validated:  # the same precedence as tokens.selectors.token_last_validated_request
        if request.issued_token_id in ids:
            issuing.setdefault(request.issued_token_id, request)
        if request.token_id in ids:
            latest.setdefault(request.token_id, request)
    sources = {}
    for token in tokens:
        request = issuing.get(token.pk) or latest.get(token.pk)
        if request is None:
            sources[token.pk] = PrefillSource(request=None, date=None, fields=_token_fields(token))
        else:
            moment = request.submitted_at or request.created_at
            sources[token.pk] = PrefillSource(
                request=request, date=validity.local_date(moment), fields=_request_fields(request)
            )
    return sources


def renewal_prefill_source(*, token: Token) -> PrefillSource:
    """What the renewal form of `token` is pre-filled with, and from where."""
    return renewal_prefill_sources(tokens=[token])[token.pk]

"""What a renewal (or extension) form of a token is pre-filled with, and from where: one rule for the form and for
the messages that promise it.

A token issued by a validated request is renewed from that request (every field it holds). A token without one
(imported, created by `issue_token`, demo data) has no description, volume or legal basis to offer: only its label,
privileges and contacts are taken from the token itself. An extension never copies the legal basis: the added data
needs its own.
"""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q
from django.utils.translation import gettext as _

from . import validity
from .models import AccessRequest, Origin, Token
from .selectors import access_request_snapshot, token_last_validated_request

LEGAL_BASIS_FIELDS = ("legal_basis_nature", "legal_basis_text", "legal_basis_url", "legal_basis_document")
CONTACT_FIELDS = tuple(
    f"{role}_{k}" for role in AccessRequest.CONTACT_ROLES for k in ("name", "email", "phone")
)
# The fields a submission needs that only an earlier request can provide (a token does not hold them).
REQUEST_ONLY_FIELDS = ("project_description", "expected_volume", "legal_basis_nature", "legal_basis_text")


@dataclass(frozen=True)
class PrefillSource:
    """Where a renewal form's values come from: `request` (the earlier validated request, or None: the token
    itself), its `date` (the request's decision, else the token's issue, in TIME_ZONE) and the pre-filled
    `fields` (form field names, in form order)."""

    request: AccessRequest | None
    date: dt.date
    fields: list[str]

    @property
    def from_request(self) -> bool:
        return self.request is not None

    @property
    def missing(self) -> list[str]:
        """What a submission needs that is not pre-filled (form field names)."""
        return [name for name in REQUEST_ONLY_FIELDS if name not in self.fields]


@dataclass(frozen=True)
class Prefill:
    """Form initial values (legal_basis_document: the stored name of the earlier request's PDF) and their source."""

    initial: dict
    source: PrefillSource

    @property
    def prefilled_from(self) -> AccessRequest | None:
        return self.source.request


FIELD_ORDER = (
    "label",
    "privileges",
    "project_description",
    "expected_volume",
    *LEGAL_BASIS_FIELDS,
    *CONTACT_FIELDS,
)


def _token_values(token: Token) -> dict:
    values = {"label": token.label}
    contacts = {}
    for contact in sorted(
        token.contacts.all(), key=lambda c: c.pk
    ):  # prefetched contacts are used as they are
        contacts.setdefault(contact.role, contact)
    for role in AccessRequest.CONTACT_ROLES:
        contact = contacts.get(role)
        for k in ("name", "email", "phone"):
            values[f"{role}_{k}"] = getattr(contact, k, "") if contact else ""
    return values


def token_prefill(*, token: Token, kind: str = AccessRequest.Kind.RENEWAL) -> Prefill:
    """Initial values of a renewal (or extension) form of `token`, with their source."""
    return _prefill(token, token_last_validated_request(token=token), kind)


def _last_validated_requests(tokens: list[Token]) -> dict[int, AccessRequest | None]:
    """token_last_validated_request of each token, in two queries whatever their number: the request that issued
    it, else the last one validated about it."""
    ids = {t.pk for t in tokens}
    issuing: dict[int, AccessRequest] = {}
    latest: dict[int, AccessRequest] = {}
    validated = (
        AccessRequest.objects.filter(Q(issued_token_id__in=ids) | Q(token_id__in=ids))
        .filter(state=AccessRequest.State.VALIDATED)
        .prefetch_related("privileges")
        .order_by("-decided_at", "-id")
    )
    for request in validated:
        if request.issued_token_id in ids:
            issuing.setdefault(request.issued_token_id, request)
        if request.token_id in ids:
            latest.setdefault(request.token_id, request)
    return {pk: issuing.get(pk) or latest.get(pk) for pk in ids}


def _prefill(token: Token, request: AccessRequest | None, kind: str) -> Prefill:
    if request is not None:
        values = access_request_snapshot(access_request=request)
        day = validity.local_date(request.decided_at or request.submitted_at or request.created_at)
    else:
        values = _token_values(token)
        day = validity.local_date(token.issued_at)
    initial = {k: v for k, v in values.items() if v not in (None, "", [])}
    initial["privileges"] = sorted(p.code for p in token.privileges.all())
    if not initial["privileges"]:
        del initial["privileges"]
    if kind == AccessRequest.Kind.EXTENSION:
        for key in LEGAL_BASIS_FIELDS:
            initial.pop(key, None)
    fields = [name for name in FIELD_ORDER if name in initial]
    return Prefill(initial=initial, source=PrefillSource(request=request, date=day, fields=fields))


def renewal_prefill_source(*, token: Token) -> PrefillSource:
    """Where the form a reminder of `token` leads to is pre-filled from, and which fields (what an email may promise).

    A demarches-simplifiees token leads to a new request: nothing comes from the old platform.
    """
    if token.origin == Origin.DEMARCHES_SIMPLIFIEES:
        return PrefillSource(request=None, date=validity.local_date(token.issued_at), fields=[])
    return token_prefill(token=token, kind=AccessRequest.Kind.RENEWAL).source


def renewal_prefill_sources(*, tokens: Iterable[Token]) -> dict[int, PrefillSource]:
    """renewal_prefill_source of each token (a batch of reminder emails): the same rule, with the requests read in
    two queries for the whole batch (contacts and privileges: prefetch them)."""
    tokens = list(tokens)
    renewable = [t for t in tokens if t.origin != Origin.DEMARCHES_SIMPLIFIEES]
    requests = _last_validated_requests(renewable) if renewable else {}
    return {
        t.pk: _prefill(t, requests[t.pk], AccessRequest.Kind.RENEWAL).source
        if t.pk in requests
        else renewal_prefill_source(token=t)
        for t in tokens
    }


def field_groups(fields: list[str]) -> list[str]:
    """Form fields in words, the legal basis and the contacts grouped (for pages and emails)."""
    names = set(fields)
    groups = []
    simple = (
        ("label", _("l'intitulé du projet")),
        ("privileges", _("les données demandées")),
        ("project_description", _("la description du projet")),
        ("expected_volume", _("la volumétrie attendue")),
    )
    groups += [label for name, label in simple if name in names]
    if names & set(LEGAL_BASIS_FIELDS):
        groups.append(_("le cadre juridique"))
    roles = (
        ("requester", _("demandeur")),
        ("technical", _("contact technique")),
        ("business", _("contact métier")),
    )
    present = [label for role, label in roles if {f"{role}_name", f"{role}_email"} & names]
    if present:
        groups.append(_("les contacts (%(roles)s)") % {"roles": ", ".join(present)})
    return groups
